"""The delivery rules every intake format shares (issue 23), through the real interfaces.

HL7 v2 over a real MLLP socket, FHIR and the signed Cal.com webhook over HTTP, against a
real worker, Temporal and PostgreSQL: sender clocks are not trusted beyond ours, only final
answers are replayed, a no-show or change for a session that does not run is refused, and
text PostgreSQL cannot store is refused as malformed, never called an outage.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.domain.models import AuditEventType
from missed_session.intake.signatures import sign_calcom
from tests.support import intake_samples as samples
from tests.support.intake_stack import CALCOM_SECRET, Stack, framed, new_id, running_stack


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue) as running:
        yield running


def segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(name)).split("|")


async def calcom(stack: Stack, body: bytes) -> tuple[int, dict[str, str]]:
    status, text = await stack.post("/webhooks/calcom", body, **{
        "Content-Type": "application/json",
        "X-Cal-Signature-256": sign_calcom(CALCOM_SECRET, body)})
    return status, json.loads(text)


async def row(pool: asyncpg.Pool, key: str) -> asyncpg.Record:
    found = await pool.fetchrow(
        "SELECT command, outcome, final, attempts FROM intake_messages"
        " WHERE source = 'hl7' AND message_key = $1", key)
    assert found is not None
    return found


# -- item 2: sender clocks ------------------------------------------------------------------


async def test_a_message_dated_a_day_ahead_is_refused_and_cannot_block_a_later_cancel(
        stack: Stack) -> None:
    session = new_id()
    now = datetime.now(UTC)
    [booked] = await stack.mllp(framed(samples.siu("S12", "K1", session, stack.start,
                                                   sent=now - timedelta(minutes=5))))
    assert segment(booked, "MSA")[1] == "AA"
    ahead = now + timedelta(days=1)
    [refused] = await stack.mllp(framed(samples.siu(
        "S13", "K2", session, stack.start + timedelta(hours=2), sent=ahead)))
    assert segment(refused, "MSA")[1] == "AE"
    err = segment(refused, "ERR")
    assert "MSH-7" in err[1], refused
    assert "ahead of the receiver's clock" in err[1]
    assert "allowed" in err[1]
    assert AuditEventType.RESCHEDULED not in await stack.events(session)
    # A correct cancel, made after the refused message by a correct clock, applies.
    [cancelled] = await stack.mllp(framed(samples.siu("S15", "K3", session, stack.start,
                                                      sent=datetime.now(UTC))))
    assert segment(cancelled, "MSA")[1] == "AA", cancelled
    assert AuditEventType.CANCELLED in await stack.wait_for(session, AuditEventType.CLOSED)


async def test_a_webhook_dated_a_day_ahead_is_422_naming_created_at(stack: Stack) -> None:
    uid = new_id("u")
    now = datetime.now(UTC)
    booked = samples.calcom("BOOKING_CREATED", uid, stack.start,
                            created=now - timedelta(minutes=5))
    assert (await calcom(stack, booked))[0] == 201
    ahead = samples.calcom("BOOKING_RESCHEDULED", new_id("u"), stack.start
                           + timedelta(hours=2), reschedule_uid=uid,
                           created=now + timedelta(days=1))
    status, answer = await calcom(stack, ahead)
    assert (status, answer["outcome"]) == (422, "bad_input"), answer
    assert answer["message"].startswith("createdAt: "), answer
    cancelled = samples.calcom("BOOKING_CANCELLED", uid, stack.start, created=now)
    assert (await calcom(stack, cancelled))[0] == 200
    found = await stack.wait_for(f"cal-{uid}", AuditEventType.CLOSED)
    assert AuditEventType.CANCELLED in found
    assert AuditEventType.RESCHEDULED not in found


async def test_a_clock_ahead_within_the_skew_never_makes_a_later_message_stale(
        stack: Stack) -> None:
    session = new_id()
    now = datetime.now(UTC)
    [booked, moved] = await stack.mllp(
        framed(samples.siu("S12", "W1", session, stack.start, sent=now)),
        framed(samples.siu("S13", "W2", session, stack.start + timedelta(hours=1),
                           sent=now + timedelta(minutes=4))), answers=2)
    assert (segment(booked, "MSA")[1], segment(moved, "MSA")[1]) == ("AA", "AA")
    assert "not applied" not in moved
    # Made after both by the receiver's clock, though "older" than the clock that ran ahead.
    [cancelled] = await stack.mllp(framed(samples.siu(
        "S15", "W3", session, stack.start, sent=now + timedelta(minutes=1))))
    assert segment(cancelled, "MSA")[1] == "AA", cancelled
    assert "not applied" not in cancelled
    assert AuditEventType.CANCELLED in await stack.wait_for(session, AuditEventType.CLOSED)


async def test_sender_clocks_are_compared_only_within_one_sender_feed(stack: Stack) -> None:
    session = new_id()
    now = datetime.now(UTC)
    [booked] = await stack.mllp(framed(samples.siu("S12", "G1", session, stack.start,
                                                   sent=now)))
    assert segment(booked, "MSA")[1] == "AA"
    # Another sending application, whose clock is 10 minutes behind: not stale.
    other = samples.siu("S13", "G2", session, stack.start + timedelta(hours=1),
                        sent=now - timedelta(minutes=10)).replace("|MESA_OP|", "|OTHER_EHR|")
    [moved] = await stack.mllp(framed(other))
    assert segment(moved, "MSA")[1] == "AA", moved
    assert "not applied" not in moved
    await stack.wait_for(session, AuditEventType.RESCHEDULED)


# -- item 3: answers that can change are worked out again --------------------------------------


async def test_a_check_in_before_its_booking_is_refused_then_applied_when_resent(
        stack: Stack) -> None:
    session = new_id()
    now = datetime.now(UTC)
    # The check-in is sent (and stamped) before the booking message, and its retry keeps
    # its stamp: it is still applied, never dropped as older than the booking.
    arrived = samples.siu("S14", "R1", session, stack.start, filler_status="ARRIVED",
                          sent=now - timedelta(minutes=2))
    [early] = await stack.mllp(framed(arrived))
    assert segment(early, "MSA")[1] == "AE"
    assert segment(early, "ERR")[1].startswith("^^^204&"), early
    stored = await row(stack.pool, "MESA_OP|XYZ_HOSPITAL|R1")
    assert (stored["outcome"], stored["final"]) == ("not_found", False)
    [booked] = await stack.mllp(framed(samples.siu("S12", "R2", session, stack.start,
                                                   sent=now - timedelta(minutes=1))))
    assert segment(booked, "MSA")[1] == "AA"
    [again] = await stack.mllp(framed(arrived))  # the sender's retry: same MSH-10
    assert segment(again, "MSA")[1:3] == ["AA", "R1"], again
    assert AuditEventType.CHECKED_IN in await stack.wait_for(session, AuditEventType.CLOSED)
    stored = await row(stack.pool, "MESA_OP|XYZ_HOSPITAL|R1")
    assert (stored["outcome"], stored["final"], stored["attempts"]) == ("applied", True, 2)
    [replayed] = await stack.mllp(framed(arrived))  # final now: the stored answer, as is
    assert replayed == again


# -- item 6: a no-show for a session that does not exist ---------------------------------------


async def test_a_no_show_for_an_unknown_session_is_refused_and_counted(
        stack: Stack) -> None:
    session = new_id()
    no_show = samples.siu("S26", "U1", session, stack.start, filler_status="Noshow")
    [answer] = await stack.mllp(framed(no_show))
    assert segment(answer, "MSA")[1] == "AE"
    assert segment(answer, "ERR")[1].startswith("^^^204&")
    assert f"no session {session}" in answer
    [again] = await stack.mllp(framed(no_show))
    assert segment(again, "MSA")[1] == "AE"
    stored = await row(stack.pool, "MESA_OP|XYZ_HOSPITAL|U1")
    assert (stored["command"], stored["outcome"], stored["attempts"]) == (
        "noshow", "not_found", 2)
    fhir = samples.fhir_appointment(new_id(), "noshow", stack.start)
    status, body = await stack.post("/fhir/Appointment", json.dumps(fhir))
    assert status == 404, body
    assert json.loads(body)["issue"][0]["code"] == "not-found"
    uid = new_id("u")
    status, answer_json = await calcom(stack, samples.calcom("BOOKING_NO_SHOW_UPDATED", uid,
                                                             stack.start))
    assert (status, answer_json["outcome"]) == (404, "not_found"), answer_json
    counted = await stack.pool.fetchval(
        "SELECT count(*) FROM intake_messages WHERE command = 'noshow'"
        " AND outcome = 'not_found' AND session_id = ANY($1::text[])",
        [session, fhir["id"], f"cal-{uid}"])
    assert counted == 3


# -- item 7: malformed is malformed ----------------------------------------------------------------


@pytest.mark.parametrize(("where", "mangle"), [
    ("MSH-10", lambda t: t.replace("|NUL1|", "|NU\x00L1|")),
    ("PID-5", lambda t: t.replace("SMITH^PAUL", "SMITH^PA\x00UL")),
])
async def test_a_nul_byte_is_ar_naming_the_field_never_an_outage(
        stack: Stack, where: str, mangle: object) -> None:
    assert callable(mangle)
    session = new_id()
    message = mangle(samples.siu("S12", "NUL1", session, stack.start))
    [answer] = await stack.mllp(framed(message))
    assert segment(answer, "MSA")[1] == "AR"
    assert f"{where}: holds a NUL byte" in answer
    assert "database" not in answer
    assert not await stack.exists(session)
    status, ack = await stack.post("/hl7", message)
    assert status == 200
    assert segment(ack, "MSA")[1] == "AR"


async def test_nul_in_json_is_422_naming_the_field_never_an_outage(stack: Stack) -> None:
    uid = new_id("u")
    body = samples.calcom("BOOKING_CREATED", uid, stack.start).replace(
        b'"firstName": "Sam"', b'"firstName": "Sa\\u0000m"')
    assert b"\\u0000" in body
    status, answer = await calcom(stack, body)
    assert status == 422, answer
    assert "first_name" in answer["message"]
    assert "U+0000" in answer["message"]
    assert not await stack.exists(f"cal-{uid}")
    # A value no translator checks (the version id, part of the delivery key) is refused
    # before it reaches PostgreSQL (which cannot store it), not answered "database failed".
    session = new_id()
    fhir = samples.fhir_appointment(session, "booked", stack.start, version="1\x002")
    status, text = await stack.post("/fhir/Appointment", json.dumps(fhir))
    assert status == 422, text
    diagnostics = json.loads(text)["issue"][0]["diagnostics"]
    assert "the message id: holds a NUL byte" in diagnostics
    assert not await stack.exists(session)


# -- item 8: a change to a closed session ---------------------------------------------------


async def test_changes_to_a_cancelled_session_are_refused_like_a_new_booking(
        stack: Stack) -> None:
    session = new_id()
    acks = await stack.mllp(
        framed(samples.siu("S12", "Z1", session, stack.start)),
        framed(samples.siu("S15", "Z2", session, stack.start)), answers=2)
    assert [segment(a, "MSA")[1] for a in acks] == ["AA", "AA"]
    await stack.wait_for(session, AuditEventType.CLOSED)
    later = stack.start + timedelta(hours=1)
    answers = await stack.mllp(
        framed(samples.siu("S12", "Z3", session, stack.start)),
        framed(samples.siu("S13", "Z4", session, stack.start)),
        framed(samples.siu("S14", "Z5", session, stack.start)),
        framed(samples.siu("S13", "Z6", session, later)), answers=4)
    for answer in answers:
        assert segment(answer, "MSA")[1] == "AE", answer
        assert "already closed" in answer, answer
    fhir = samples.fhir_appointment(session, "booked", stack.start)
    status, body = await stack.post("/fhir/Appointment", json.dumps(fhir))
    assert status in {404, 409}, body
    assert "already closed" in body
    assert AuditEventType.RESCHEDULED not in await stack.events(session)


# -- item 2: never an AA for what was not applied without an ERR saying why ----------------------


async def test_a_resent_booking_with_a_changed_phone_names_it_as_not_applied(
        stack: Stack) -> None:
    session = new_id()
    acks = await stack.mllp(
        framed(samples.siu("S12", "P1", session, stack.start, version="2.5", tq1=True)),
        framed(samples.siu("S14", "P2", session, stack.start, phone="(415)555-0199",
                           version="2.5", tq1=True)), answers=2)
    assert [segment(a, "MSA")[1] for a in acks] == ["AA", "AA"]
    err = segment(acks[1], "ERR")
    assert err[4] == "W", acks[1]  # accepted, but not all of it applied
    assert "NOT applied" in err[8]
    assert "phone" in err[8]
    assert len(segment(acks[1], "MSA")[3]) <= 80


async def test_a_webhook_reschedule_of_a_cancelled_session_is_refused(stack: Stack) -> None:
    old, new = new_id("u"), new_id("u")
    created = datetime.now(UTC) - timedelta(minutes=10)
    booked = samples.calcom("BOOKING_CREATED", old, stack.start, created=created)
    assert (await calcom(stack, booked))[0] == 201
    cancelled = samples.calcom("BOOKING_CANCELLED", old, stack.start,
                               created=created + timedelta(minutes=1))
    assert (await calcom(stack, cancelled))[0] == 200
    await stack.wait_for(f"cal-{old}", AuditEventType.CLOSED)
    for start in (stack.start, stack.start + timedelta(hours=1)):
        moved = samples.calcom("BOOKING_RESCHEDULED", new, start, reschedule_uid=old,
                               created=created + timedelta(minutes=2))
        status, answer = await calcom(stack, moved)
        assert (status, answer["outcome"]) == (404, "not_found"), answer
        assert "already closed" in answer["message"]
    assert AuditEventType.RESCHEDULED not in await stack.events(f"cal-{old}")
