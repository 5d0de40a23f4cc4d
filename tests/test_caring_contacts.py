"""Caring contacts after an unresolved session, on the time-skipping server and PostgreSQL.

A clinician starts the series; its messages arrive on schedule inside the client's contact
window with text consent as of each day; a STOP, an attended session or a clinician ends
it; every message, skip and end is in the series' own trail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from missed_session.application.caring import CaringContacts
from missed_session.application.results import ResultKind
from missed_session.audit.cli import VerifyRequest, run_verify
from missed_session.channels.simulated import SimulatedPhone
from missed_session.domain import caring, events
from missed_session.domain.clients import (
    ConsentEntry,
    ConsentSource,
    ConsentSubject,
)
from missed_session.domain.messages import REVEALING_WORDS
from missed_session.domain.models import (
    AuditEvent,
    ClinicianDecision,
    Outcome,
)
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.clients import ClientDirectory
from tests.support.caring_contacts import PHONE, ZONE, unresolved_session
from tests.support.session_workflow import SENDER, placed
from worker import new_worker

DECISION = ClinicianDecision(clinician_id="t-ana", reason="offered after an unresolved episode")


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER) as running:
        yield running


async def finished(env: WorkflowEnvironment, series_id: str) -> str:
    """The series' outcome, skipping time until its last run ends.

    (`result()` following continue-as-new runs on the time-skipping server ends with "No
    completion event found", so the latest run is waited on by its own id.)
    """
    for _ in range(400):
        latest = await env.client.get_workflow_handle(series_id).describe()
        if latest.status is not WorkflowExecutionStatus.RUNNING:
            break
        await env.sleep(timedelta(hours=12))
    handle = env.client.get_workflow_handle(series_id, run_id=latest.run_id)
    outcome: str = await handle.result(follow_runs=False)
    return outcome


async def series_trail(pool: asyncpg.Pool, series_id: str) -> list[AuditEvent]:
    return await AuditStore(pool).trail(series_id)


async def begin(env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, *,
                days: tuple[int, ...] = (1, 7, 30), **session: object,
                ) -> tuple[CaringContacts, str]:
    now = await env.get_current_time()
    ref = f"c-{now.timestamp():.0f}-{len(task_queue)}{task_queue[-6:]}"
    session_id = f"s-{task_queue[-10:]}"
    await unresolved_session(pool, ref, session_id, now - timedelta(hours=2), **session)  # type: ignore[arg-type]
    use = CaringContacts(env.client, pool, task_queue=task_queue, clock=lambda: now)
    started = await use.start(session_id, DECISION, days=days)
    assert started.kind is ResultKind.STARTED, started.message
    assert started.data is not None
    return use, started.data["series_id"]


@pytest.mark.usefixtures("worker")
async def test_messages_arrive_on_schedule_inside_the_window_with_consent(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    env = time_skipping_env
    started_at = await env.get_current_time()
    _, series_id = await begin(env, pool, task_queue)

    outcome = await finished(env, series_id)

    assert outcome == "completed"
    trail = await series_trail(pool, series_id)
    assert [e.event_type.value for e in trail] == [
        "caring_started", "caring_sent", "caring_sent", "caring_sent", "caring_ended"]
    for index, (sent, day) in enumerate(zip(trail[1:4], (1, 7, 30), strict=True)):
        details = events.read(sent)
        assert isinstance(details, events.CaringSent)
        assert details.index == index
        assert details.consent_record is not None
        assert sent.occurred_at >= started_at + timedelta(days=day)
        local = sent.occurred_at.astimezone(ZoneInfo(ZONE))
        assert 8 <= local.hour < 21, local
    ended = events.read(trail[-1])
    assert isinstance(ended, events.CaringEnded)
    assert (ended.reason, ended.sent) == ("completed", 3)
    verified = await run_verify(VerifyRequest(None), AuditStore(pool))
    assert verified.ok, verified.text
    assert "1 caring-contact series: 1 intact, 0 broken" in verified.text
    texts = await SimulatedPhone(pool).placed(series_id)
    assert [(t["kind"], t["to_number"], t["result"]) for t in texts] == [
        ("text", PHONE, "sent")] * 3
    assert {t["idempotency_key"] for t in texts} == {
        f"{series_id}/message-{n}" for n in range(3)}
    for text in texts:
        assert text["body"].startswith("Hi Robin, ")
        assert "STOP" in text["body"]
        assert not any(word in text["body"].lower() for word in REVEALING_WORDS)


@pytest.mark.usefixtures("worker")
async def test_a_stop_from_the_number_ends_the_series_and_nothing_is_sent(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    env = time_skipping_env
    _, series_id = await begin(env, pool, task_queue)
    await ClientDirectory(pool).append_consent(ConsentEntry(
        client_ref=None, subject=ConsentSubject.TEXT, contact_point=PHONE, granted=False,
        effective_at=datetime.now(UTC), source=ConsentSource.STOP_REPLY,
        recorded_by="inbound-text"))

    assert await finished(env, series_id) == "stopped_by_client"
    assert await placed(pool, series_id) == []
    assert [e.event_type.value for e in await series_trail(pool, series_id)] == [
        "caring_started", "caring_ended"]


@pytest.mark.usefixtures("worker")
async def test_a_clinician_ends_the_series_recorded_with_who_and_why(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    env = time_skipping_env
    use, series_id = await begin(env, pool, task_queue)

    ended = await use.end(series_id, ClinicianDecision(clinician_id="t-ana",
                                                       reason="client re-engaged"))

    assert ended.kind is ResultKind.APPLIED, ended.message
    assert await finished(env, series_id) == "clinician"
    last = events.read((await series_trail(pool, series_id))[-1])
    assert isinstance(last, events.CaringEnded)
    assert (last.reason, last.by, last.note) == ("clinician", "t-ana", "client re-engaged")
    again = await use.end(series_id, DECISION)
    assert again.kind in {ResultKind.NOT_FOUND, ResultKind.REFUSED}


@pytest.mark.usefixtures("worker")
async def test_an_attended_session_ends_the_series(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    env = time_skipping_env
    _, series_id = await begin(env, pool, task_queue)
    series = await env.client.get_workflow_handle(series_id).describe()
    assert series.status is not None
    ref = series_id.split(":")[1]
    now = await env.get_current_time()
    closed = events.new_event(session_id=f"s-later-{task_queue[-8:]}", sequence=1,
                              occurred_at=now, details=events.Closed(
                                  outcome=Outcome.ATTENDED, attempts=0))
    await AuditStore(pool).record([closed], attendance=Attendance(
        client_ref=ref, therapist_id="t-ana", start=now + timedelta(minutes=1),
        outcome=Outcome.ATTENDED))

    assert await finished(env, series_id) == "attended"
    assert await placed(pool, series_id) == []


async def test_a_series_follows_only_an_unresolved_end_unless_a_clinician_chooses_it(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    env = time_skipping_env
    now = await env.get_current_time()
    use = CaringContacts(env.client, pool, task_queue=task_queue, clock=lambda: now)
    await unresolved_session(pool, "c-reached", "s-reached", now, outcome=Outcome.REACHED)
    await unresolved_session(pool, "c-attended", "s-attended", now, outcome=Outcome.ATTENDED)

    refused = await use.start("s-reached", DECISION)
    assert refused.kind is ResultKind.REFUSED
    assert "unless a clinician chooses it" in refused.message
    assert (await use.start("s-attended", DECISION, chosen=True)).kind is ResultKind.REFUSED
    assert (await use.start("s-none", DECISION)).kind is ResultKind.NOT_FOUND
    chosen = await use.start("s-reached", DECISION, chosen=True)
    assert chosen.kind is ResultKind.STARTED, chosen.message
    again = await use.start("s-reached", DECISION, chosen=True)
    assert again.kind is ResultKind.ALREADY_SCHEDULED
    assert chosen.data is not None
    await env.client.get_workflow_handle(chosen.data["series_id"]).terminate()


def test_every_message_is_discreet_short_and_says_how_to_stop() -> None:
    for index in range(len(caring.DEFAULT_DAYS)):
        text = caring.message(index, "Alexandria-Maria", "Riverside Office")
        assert "STOP" in text
        assert len(text) <= 160
    with pytest.raises(ValueError, match="characters"):
        caring.message(0, "A" * 50, "A very long practice name that goes on")
