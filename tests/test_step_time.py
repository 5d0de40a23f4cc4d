"""The trail records an outreach step at the time it went out, and the no-show at its deadline.

Under load a workflow task runs seconds after the activity it records (issue 28: 200
simultaneous no-shows, every first call out within 1.5 s, trail times up to 50 s later),
so a trail stamped with the recording task's `workflow.now()` made the service look slower
to its clients than it was. A step reports when its try went out (`StepOutcome.at`, on the
server's clock), and the grace period's expiry is recorded at the deadline itself; the
first-outreach metric is the difference of the two.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.outreach import OutreachActivities
from missed_session.channels.simulated import SimulatedPhone
from missed_session.domain.clients import StepOutcome
from missed_session.domain.events import OutreachAttempted, read
from missed_session.domain.models import AuditEvent, CallResult, OutreachRequest
from missed_session.metrics import ServiceMetrics, is_first_outreach
from missed_session.store.audit import AuditStore
from tests.support.factories import booking
from tests.support.session_workflow import GRACE, SENDER, book, every, only, run, trail
from worker import new_worker

SLOW = 1.5
"""Seconds the phone takes to ring: the gap between a step and the task that records it."""


class SlowPhone(SimulatedPhone):
    """The simulated phone, ringing for `SLOW` real seconds before it answers."""

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        await asyncio.sleep(SLOW)
        return await super().call(key, session_id, to)


@pytest.fixture
async def slow_worker(client: Client, pool: asyncpg.Pool,
                      task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER,
                          phone=SlowPhone(pool)) as running:
        yield running


@pytest.mark.parametrize("server_ahead", [timedelta(seconds=-30), timedelta(hours=3)])
async def test_a_step_reports_when_its_try_went_out(pool: asyncpg.Pool,
                                                    server_ahead: timedelta) -> None:
    # The worker's clock, as the provider records the call; never before the try's start on
    # the server's clock (a lagging worker clock; a time-skipping server ahead of the wall).
    session = booking()
    started = datetime.now(UTC) + server_ahead
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, started_time=started)
    outreach = OutreachActivities(SimulatedPhone(pool), SENDER)
    request = OutreachRequest(idempotency_key=f"{session.workflow_id}/attempt-1/call",
                              session_id=session.session_id, client=session.client)
    outcome = await env.run(outreach.call_client, request)
    assert isinstance(outcome, StepOutcome)
    assert outcome.at is not None
    went_out = max(started, datetime.now(UTC))
    assert went_out - timedelta(seconds=1) < outcome.at <= went_out + timedelta(seconds=1)
    assert outcome.at >= started


@pytest.mark.usefixtures("slow_worker")
async def test_the_trail_dates_a_call_when_it_went_out_and_the_no_show_at_its_deadline(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    session = await book(time_skipping_env)

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    expired = only(events, "grace_period_expired")
    assert expired.occurred_at == session.start + GRACE  # the deadline, not the task after it
    first_call = every(events, "outreach_attempted")[0]
    history = await client.get_workflow_handle(session.workflow_id).fetch_history()
    calls = {e.event_id for e in history.events
             if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
             and e.activity_task_scheduled_event_attributes.activity_type.name == "call_client"}
    first_scheduled = min(calls)
    started = next(e for e in history.events
                   if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
                   and e.activity_task_started_event_attributes.scheduled_event_id
                   == first_scheduled)
    completed = next(e for e in history.events
                     if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                     and e.activity_task_completed_event_attributes.scheduled_event_id
                     == first_scheduled)
    went_out = started.event_time.ToDatetime(UTC)
    answered = completed.event_time.ToDatetime(UTC)
    assert abs(first_call.occurred_at - went_out) < timedelta(milliseconds=100)
    assert answered - first_call.occurred_at >= timedelta(seconds=SLOW - 0.1)  # not its record


async def test_the_first_outreach_metric_runs_from_the_expiry_without_reading_the_trail(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 28 item 2: the append that writes a first step reads the expiry in the same
    # statement; the value is what the whole-trail read gave (expiry -> each first step).
    delays: list[timedelta] = []
    trail_reads: list[str] = []
    observe = ServiceMetrics.first_outreach
    read_trail = AuditStore.trail

    def first_outreach(self: ServiceMetrics, delay: timedelta) -> None:
        delays.append(delay)
        observe(self, delay)

    async def trail_read(self: AuditStore, session_id: str) -> list[AuditEvent]:
        trail_reads.append(session_id)
        return await read_trail(self, session_id)

    monkeypatch.setattr(ServiceMetrics, "first_outreach", first_outreach)
    monkeypatch.setattr(AuditStore, "trail", trail_read)
    session = await book(time_skipping_env, protocol={"max_attempts": 2})
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER):
        await run(client, task_queue, session)
    assert trail_reads == []  # not one whole-trail read while the ladder ran

    events = await trail(pool, session.session_id)
    expired = only(events, "grace_period_expired")
    firsts = [event for event in events if is_first_outreach(read(event))]
    assert firsts  # attempt 1's call
    later = [event for event in events
             if isinstance(step := read(event), OutreachAttempted) and step.attempt == 2]
    assert later  # not counted: the metric ends at the first attempt's steps
    assert delays == [event.occurred_at - expired.occurred_at for event in firsts]
