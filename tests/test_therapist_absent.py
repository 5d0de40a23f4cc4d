"""A therapist's no-show, through the real HTTP routes to a real worker.

A host no-show (Cal.com `AFTER_HOSTS_CAL_VIDEO_NO_SHOW`, `noShowHost`, an FHIR `noshow`
whose Practitioner declined) must never lead to calling the client: before the session's
no-show it is cancelled with the reason in the trail, during outreach it stands down; the
on-call clinician is sent a notice (the absent therapist is not); the sender is told what
was done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.application.notices import notice_trail
from missed_session.application.therapist_absent import NOTICE_NAME
from missed_session.domain import events
from missed_session.domain.models import AuditEventType
from missed_session.domain.roster_file import parse_roster
from missed_session.intake.signatures import sign_calcom
from missed_session.store.audit import AuditStore
from missed_session.store.notices import RosterStore
from tests.support import intake_samples as samples
from tests.support.intake_stack import CALCOM_SECRET, Stack, new_id, running_stack
from tests.support.notices import ROSTER

CLIENT_CONTACT = {AuditEventType.OUTREACH_ATTEMPTED, AuditEventType.GRACE_PERIOD_EXPIRED,
                  AuditEventType.MESSAGE_SENT}


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                task_queue: str) -> AsyncIterator[Stack]:
    loaded = parse_roster(ROSTER, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    async with running_stack(time_skipping_env, pool, task_queue) as running:
        yield running


async def calcom(stack: Stack, body: bytes) -> tuple[int, dict[str, str]]:
    status, text = await stack.post("/webhooks/calcom", body, **{
        "Content-Type": "application/json",
        "X-Cal-Signature-256": sign_calcom(CALCOM_SECRET, body)})
    return status, json.loads(text)


async def notice_sent_to(stack: Stack, notice_key: str) -> str:
    for _ in range(400):
        for event in await notice_trail(stack.pool, notice_key):
            if isinstance(event, events.NoticeSent):
                assert event.target != "therapist"
                return event.clinician_id
        await asyncio.sleep(0.05)
    msg = f"no notice sent for {notice_key}"
    raise AssertionError(msg)


@pytest.mark.parametrize("signal", ["after_hosts", "no_show_host"])
async def test_a_host_no_show_before_the_no_show_contacts_no_client(
        stack: Stack, time_skipping_env: WorkflowEnvironment, signal: str) -> None:
    uid = new_id("u")
    session = f"cal-{uid}"
    assert (await calcom(stack, samples.calcom("BOOKING_CREATED", uid, stack.start)))[0] == 201
    body = (samples.calcom("AFTER_HOSTS_CAL_VIDEO_NO_SHOW", uid, stack.start,
                           hostEmail="ana@practice.example")
            if signal == "after_hosts" else
            samples.calcom("BOOKING_NO_SHOW_UPDATED", uid, stack.start, attendees=[],
                           noShowHost=True, message="host marked as no-show"))
    status, answer = await calcom(stack, body)
    assert (status, answer["outcome"]) == (200, "applied"), answer
    assert "cancelled before any client outreach" in answer["message"]
    assert "notice" in answer["message"]
    assert "on-call" in answer["message"]
    assert await calcom(stack, body) == (status, answer)  # a retry: the same answer
    trail = await stack.wait_for(session, AuditEventType.CLOSED)
    assert AuditEventType.CANCELLED in trail
    assert not CLIENT_CONTACT & set(trail)
    cancelled = next(e for e in await AuditStore(stack.pool).trail(session)
                     if e.event_type is AuditEventType.CANCELLED)
    assert "the therapist did not attend" in str(cancelled.data)
    assert await notice_sent_to(stack, f"{session}/{NOTICE_NAME}") == "oc-lee"
    await time_skipping_env.sleep(timedelta(days=2))  # past the start and grace period
    assert not CLIENT_CONTACT & set(await stack.events(session))


async def test_a_host_no_show_during_outreach_stands_it_down(
        stack: Stack, time_skipping_env: WorkflowEnvironment) -> None:
    uid = new_id("u")
    session = f"cal-{uid}"
    assert (await calcom(stack, samples.calcom("BOOKING_CREATED", uid, stack.start)))[0] == 201
    now = await time_skipping_env.get_current_time()
    await time_skipping_env.sleep(stack.start - now + timedelta(minutes=16))
    await stack.wait_for(session, AuditEventType.GRACE_PERIOD_EXPIRED)
    status, answer = await calcom(stack, samples.calcom("AFTER_HOSTS_CAL_VIDEO_NO_SHOW", uid,
                                                        stack.start))
    assert (status, answer["outcome"]) == (200, "applied"), answer
    assert "stood down" in answer["message"]
    trail = await stack.wait_for(session, AuditEventType.CLOSED)
    assert AuditEventType.CLINICIAN_DECISION in trail
    decision = next(e for e in await AuditStore(stack.pool).trail(session)
                    if e.event_type is AuditEventType.CLINICIAN_DECISION)
    assert decision.data["decision"] == "stand_down"
    assert decision.data["clinician_id"] == "scheduler:calcom"
    assert await notice_sent_to(stack, f"{session}/{NOTICE_NAME}") == "oc-lee"


async def test_a_host_no_show_for_an_unknown_session_is_not_found(stack: Stack) -> None:
    status, answer = await calcom(stack, samples.calcom(
        "AFTER_HOSTS_CAL_VIDEO_NO_SHOW", new_id("u"), stack.start))
    assert (status, answer["outcome"]) == (404, "not_found"), answer


async def test_an_fhir_noshow_whose_practitioner_declined(stack: Stack) -> None:
    session = new_id()
    booked = samples.fhir_appointment(session, "booked", stack.start, version="1")
    status, _ = await stack.post("/fhir/Appointment", json.dumps(booked))
    assert status == 201
    absent = samples.fhir_appointment(session, "noshow", stack.start, version="2")
    absent["participant"][1]["status"] = "declined"
    status, text = await stack.post("/fhir/Appointment", json.dumps(absent))
    assert status == 200, text
    assert "cancelled before any client outreach" in text
    trail = await stack.wait_for(session, AuditEventType.CLOSED)
    assert AuditEventType.CANCELLED in trail
    assert not CLIENT_CONTACT & set(trail)
