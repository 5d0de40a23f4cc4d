"""HL7 v2 SIU through a real MLLP socket and POST /hl7 to a real worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.domain.models import AuditEventType
from tests.support import intake_samples as samples
from tests.support.intake_stack import END_BLOCK, Stack, framed, new_id, running_stack


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue) as running:
        yield running


def msa(ack: str) -> list[str]:
    segment = next(s for s in ack.split("\r") if s.startswith("MSA"))
    return segment.split("|")


async def test_s12_starts_once_and_a_duplicate_gets_the_first_ack(stack: Stack) -> None:
    session = new_id()
    message = samples.siu("S12", "C1", session, stack.start)
    [first] = await stack.mllp(framed(message))
    assert msa(first)[1:3] == ["AA", "C1"]
    assert await stack.exists(session)
    [again] = await stack.mllp(framed(message))
    assert again == first
    assert await stack.wait_for(session, AuditEventType.SCHEDULED) == [
        AuditEventType.SCHEDULED]


async def test_s13_moves_and_s14_moves_only_when_the_start_changes(stack: Stack) -> None:
    session = new_id()
    later = stack.start + timedelta(hours=1)
    acks = await stack.mllp(
        framed(samples.siu("S12", "M1", session, stack.start)),
        framed(samples.siu("S13", "M2", session, later)),
        framed(samples.siu("S14", "M3", session, later)),
        answers=3)
    assert [msa(a)[1] for a in acks] == ["AA", "AA", "AA"]
    assert "did not change" in msa(acks[2])[3] or "already scheduled" in msa(acks[2])[3]
    found = await stack.wait_for(session, AuditEventType.RESCHEDULED)
    assert found.count(AuditEventType.RESCHEDULED) == 1
    [moved] = await stack.mllp(framed(samples.siu("S14", "M4", session, stack.start)))
    assert msa(moved)[1] == "AA"
    for _ in range(100):
        if (await stack.events(session)).count(AuditEventType.RESCHEDULED) == 2:
            break
        await asyncio.sleep(0.05)
    assert (await stack.events(session)).count(AuditEventType.RESCHEDULED) == 2


async def test_s14_arrived_checks_in_and_a_later_reschedule_is_refused(stack: Stack) -> None:
    session = new_id()
    [booked, arrived] = await stack.mllp(
        framed(samples.siu("S12", "A1", session, stack.start)),
        framed(samples.siu("S14", "A2", session, stack.start, filler_status="ARRIVED")),
        answers=2)
    assert (msa(booked)[1], msa(arrived)[1]) == ("AA", "AA")
    await stack.wait_for(session, AuditEventType.CLOSED)
    assert AuditEventType.CHECKED_IN in await stack.events(session)
    [late] = await stack.mllp(framed(samples.siu("S13", "A3", session,
                                                 stack.start + timedelta(hours=2))))
    assert msa(late)[1] == "AE"
    assert "already closed" in msa(late)[3]
    assert AuditEventType.RESCHEDULED not in await stack.events(session)


@pytest.mark.parametrize(("trigger", "status"), [("S15", "Cancelled"), ("S17", "Deleted")])
async def test_s15_and_s17_cancel(stack: Stack, trigger: str, status: str) -> None:
    session = new_id()
    acks = await stack.mllp(framed(samples.siu("S12", "B1", session, stack.start)),
                            framed(samples.siu(trigger, "B2", session, stack.start,
                                               filler_status=status)), answers=2)
    assert [msa(a)[1] for a in acks] == ["AA", "AA"]
    found = await stack.wait_for(session, AuditEventType.CLOSED)
    assert AuditEventType.CANCELLED in found


async def test_s26_no_show_is_recorded(stack: Stack) -> None:
    session = new_id()
    acks = await stack.mllp(framed(samples.siu("S12", "N1", session, stack.start)),
                            framed(samples.siu("S26", "N2", session, stack.start,
                                               filler_status="Noshow")), answers=2)
    assert [msa(a)[1] for a in acks] == ["AA", "AA"]
    assert "no-show is recorded" in msa(acks[1])[3]


@pytest.mark.parametrize(("mangle", "code"), [
    (lambda t: "\r".join(s for s in t.split("\r") if not s.startswith("SCH")), "AR"),
    (lambda t: t.replace("SIU^S12", "SIU^S99"), "AR"),
    (lambda t: t.replace("|50|m|^^50^", "|50|m|^^50^2030-1-1 ").replace("TQ1", "XXX"), "AE"),
    (lambda t: t.replace("(415)555-0123", ""), "AE"),
])
async def test_malformed_siu_gets_ae_or_ar_and_starts_nothing(stack: Stack, mangle: object,
                                                              code: str) -> None:
    assert callable(mangle)
    session = new_id()
    [answer] = await stack.mllp(framed(mangle(samples.siu("S12", "X1", session, stack.start))))
    assert msa(answer)[1] == code
    assert "ERR|" in answer
    assert not await stack.exists(session)


async def test_framing_several_per_read_split_reads_and_lf_separators(stack: Stack) -> None:
    one, two, three = new_id(), new_id(), new_id()
    both = framed(samples.siu("S12", "F1", one, stack.start)) + framed(
        samples.siu("S12", "F2", two, stack.start, separator="\n"))
    split = framed(samples.siu("S12", "F3", three, stack.start, separator="\r\n"))
    acks = await stack.mllp(both + split[:40], split[40:], answers=3)
    assert [msa(a)[1:3] for a in acks] == [["AA", "F1"], ["AA", "F2"], ["AA", "F3"]]
    for session in (one, two, three):
        assert await stack.exists(session)


async def test_ne_gets_no_ack(stack: Stack) -> None:
    quiet, loud = new_id(), new_id()
    acks = await stack.mllp(framed(samples.siu("S12", "Q1", quiet, stack.start, ack="NE")),
                            framed(samples.siu("S12", "Q2", loud, stack.start)), answers=1)
    assert msa(acks[0])[2] == "Q2"
    assert await stack.exists(quiet)


async def test_cancel_before_booking_and_an_old_message_after_a_newer_one(
        stack: Stack) -> None:
    cancelled, session = new_id(), new_id()
    acks = await stack.mllp(
        framed(samples.siu("S15", "O1", cancelled, stack.start)),
        framed(samples.siu("S12", "O2", cancelled, stack.start)), answers=2)
    assert [msa(a)[1] for a in acks] == ["AA", "AA"]
    assert "cancelled before its booking" in msa(acks[0])[3]
    assert "not started" in msa(acks[1])[3]
    assert not await stack.exists(cancelled)
    now = datetime.now(UTC) - timedelta(hours=1)
    acks = await stack.mllp(
        framed(samples.siu("S12", "O3", session, stack.start, sent=now)),
        framed(samples.siu("S13", "O4", session, stack.start + timedelta(hours=1),
                           sent=now + timedelta(minutes=5))),
        framed(samples.siu("S14", "O5", session, stack.start + timedelta(hours=3),
                           sent=now + timedelta(minutes=1))), answers=3)
    assert [msa(a)[1] for a in acks] == ["AA", "AA", "AA"]
    assert "recorded, not applied" in msa(acks[2])[3]
    assert msa(acks[2])[3].endswith(" ...")  # cut at a word, never mid-word
    err = next(s for s in acks[2].split("\r") if s.startswith("ERR"))
    assert err.startswith("ERR|^^^0&")  # v2.3 ERR-1: code 0, accepted (not applied)
    assert "older than one already applied from the same sender (MSH-7" in err
    found = await stack.wait_for(session, AuditEventType.RESCHEDULED)
    assert found.count(AuditEventType.RESCHEDULED) == 1


async def test_http_transport(stack: Stack) -> None:
    session = new_id()
    status, ack = await stack.post("/hl7", samples.siu("S12", "H1", session, stack.start),
                                   **{"Content-Type": "x-application/hl7-v2+er7"})
    assert status == 200
    assert msa(ack)[1:3] == ["AA", "H1"]
    assert await stack.exists(session)
    status, ack = await stack.post("/hl7", "MSH|^~\\&|X")
    assert (status, msa(ack)[1]) == (200, "AR")


async def test_a_restart_still_knows_the_first_answer(
        time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str) -> None:
    session = new_id()
    async with running_stack(time_skipping_env, pool, task_queue) as first:
        message = samples.siu("S12", "R1", session, first.start)
        [answer] = await first.mllp(framed(message))
    async with running_stack(time_skipping_env, pool, task_queue) as second:
        [again] = await second.mllp(framed(message))
    assert again == answer


async def test_a_refused_change_is_ae_and_a_past_start_is_bad_input(stack: Stack) -> None:
    session = new_id()
    [booked] = await stack.mllp(framed(samples.siu("S12", "P1", session, stack.start)))
    assert msa(booked)[1] == "AA"
    past = stack.start - timedelta(days=3)
    [moved] = await stack.mllp(framed(samples.siu("S13", "P2", session, past)))
    assert msa(moved)[1] == "AE"
    assert "past its grace period" in moved
    # Without what a booking needs, only the start is sent: the workflow's validator refuses.
    [refused] = await stack.mllp(framed(samples.siu("S13", "P3", session, past, phone="")))
    assert msa(refused)[1] == "AE"
    assert "reschedule refused" in refused
    assert AuditEventType.RESCHEDULED not in await stack.events(session)


# -- MLLP that always answers (issue 23, item 9) ---------------------------------------------


@pytest.fixture
async def small_stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                      task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue, max_message_bytes=2_000,
                             mllp_frame_timeout_seconds=1.0) as running:
        yield running


async def test_an_oversized_message_gets_ar_with_the_reason(small_stack: Stack) -> None:
    session, after = new_id(), new_id()
    big = samples.siu("S12", "BIG1", session, small_stack.start) + "NTE|1||" + "x" * 3_000
    # Whole, then a normal message: AR, and the connection goes on.
    acks = await small_stack.mllp(
        framed(big), framed(samples.siu("S12", "BIG2", after, small_stack.start)), answers=2)
    assert msa(acks[0])[1:3] == ["AR", "BIG1"]
    assert "larger than 2000 bytes" in acks[0]
    assert msa(acks[1])[1:3] == ["AA", "BIG2"]
    # Its end never coming within the limit: AR, then the connection closes.
    reader, writer = await asyncio.open_connection("127.0.0.1", small_stack.mllp_port)
    try:
        writer.write(b"\x0b" + big.replace("BIG1", "BIG3").encode())
        await writer.drain()
        answer = (await asyncio.wait_for(reader.readuntil(END_BLOCK), 30))[1:-2].decode()
        assert msa(answer)[1:3] == ["AR", "BIG3"]
        assert "larger than 2000 bytes" in answer
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
    assert not await small_stack.exists(session)
    assert await small_stack.exists(after)


async def test_stray_bytes_and_an_abandoned_frame_never_swallow_the_next_message(
        stack: Stack) -> None:
    one, two = new_id(), new_id()
    garbage = b"\r\nHELLO\x1c\r" + b"\x00\xff junk"
    abandoned = b"\x0bMSH|^~\\&|MESA_OP|XYZ_HOSPITAL|iFW|ABC|2026"  # never finished
    acks = await stack.mllp(garbage + framed(samples.siu("S12", "J1", one, stack.start)),
                            abandoned, framed(samples.siu("S12", "J2", two, stack.start)),
                            answers=2)
    assert [msa(a)[1:3] for a in acks] == [["AA", "J1"], ["AA", "J2"]]
    assert await stack.exists(one)
    assert await stack.exists(two)


async def test_a_frame_that_never_ends_gets_ar_after_the_frame_timeout(
        small_stack: Stack) -> None:
    session = new_id()
    partial = samples.siu("S12", "T1", session, small_stack.start)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_stack.mllp_port)
    try:
        writer.write(b"\x0b" + partial.encode())  # no 0x1C 0x0D
        await writer.drain()
        answer = (await asyncio.wait_for(reader.readuntil(END_BLOCK), 10))[1:-2].decode()
    finally:
        writer.close()
    assert msa(answer)[1:3] == ["AR", "T1"]
    assert "did not end" in answer
    assert not await small_stack.exists(session)


async def test_training_messages_are_refused_or_dry_run(
        time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str) -> None:
    session = new_id()
    async with running_stack(time_skipping_env, pool, task_queue) as stack:
        training = samples.siu("S12", "TR1", session, stack.start).replace("|P|2.3",
                                                                           "|T|2.3")
        [answer] = await stack.mllp(framed(training))
        assert msa(answer)[1] == "AR"
        assert "^^^202&" in answer
        assert "processing id T (training)" in answer
        assert not await stack.exists(session)
    async with running_stack(time_skipping_env, pool, task_queue,
                             hl7_non_production="dry_run") as dry:
        [answer] = await dry.mllp(framed(training))
        assert msa(answer)[1] == "AA"
        assert "dry run" in answer
        assert f"would book session {session}" in answer
        assert not await dry.exists(session)


async def test_a_long_answer_is_cut_at_a_word_in_msa_and_whole_in_err(stack: Stack) -> None:
    session = new_id()
    v25 = samples.siu("S12", "L1", session, stack.start, version="2.5", tq1=True)
    [answer] = await stack.mllp(framed(v25))
    text = msa(answer)[3]
    assert msa(answer)[1] == "AA"
    if len(f"scheduled session {session} (workflow session-{session})") > 80:
        assert len(text) <= 80
        assert text.endswith(" ...")
        err = next(s for s in answer.split("\r") if s.startswith("ERR")).split("|")
        assert err[4] == "I"
        assert f"workflow session-{session})" in err[8]


async def test_bytes_are_utf8_or_the_8859_msh18_names(stack: Stack) -> None:
    latin, unnamed = new_id(), new_id()
    named = samples.siu("S12", "E1", latin, stack.start).replace(
        "|P|2.3|||", "|P|2.3||||||8859/1|").replace("SMITH^PAUL", "SMITH^JOS\xc9")
    acks = await stack.mllp(
        b"\x0b" + named.encode("latin-1") + END_BLOCK,
        b"\x0b" + samples.siu("S12", "E2", unnamed, stack.start).replace(
            "SMITH^PAUL", "SMITH^JOS\xc9").encode("latin-1") + END_BLOCK, answers=2)
    assert msa(acks[0])[1] == "AA", acks[0]
    assert msa(acks[1])[1:3] == ["AR", "E2"]
    assert "not valid UTF-8" in acks[1]
    assert await stack.exists(latin)
    assert not await stack.exists(unnamed)
