"""Helpers first written for tests/test_session_workflow.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.channels.simulated import SimulatedPhone
from missed_session.domain.models import AuditEvent, SessionBooking, SessionResult
from missed_session.store.audit import AuditStore
from tests.support.factories import booking, daytime
from workflows.session import SessionWorkflow

SENDER = Sender("Alex", "+15555550100")


CLIENT_PHONE = "+14155550123"
"""The client's number in `tests.support.factories`."""


CONTACT_PHONE = "+14155550999"
"""The emergency contact's number in `tests.support.factories`."""


GRACE = timedelta(minutes=15)


HIGH_RISK_GRACE = timedelta(minutes=10)


LATENCY = timedelta(seconds=1)
"""Real time that passes while the worker runs a workflow task or an activity.

The test server skips time only while nothing is in flight. A timer's duration is
computed from `workflow.now()` (when the workflow task started) but the timer starts when
the task completes, and the event after it is stamped when the next task starts: each adds
a few real milliseconds. Observed: 1-10 ms; one second is the ceiling, and far below the
minutes that would mean a wrong grace period or a skipped spacing.
"""


OUTREACH_TRAIL = ["grace_period_expired", "therapist_alerted"]


async def book(
    env: WorkflowEnvironment, *, ahead: timedelta = timedelta(hours=1), **overrides: Any
) -> SessionBooking:
    """A booking starting at 10:00 client time, at least `ahead` of the test server's clock.

    10:00 keeps the whole protocol inside the client's contact window (08:00-21:00).
    """
    start = daytime(await env.get_current_time() + ahead).replace(microsecond=0)
    return booking(**{**overrides, "start": start.isoformat()})


async def begin(
    client: Client, task_queue: str, session: SessionBooking
) -> WorkflowHandle[SessionWorkflow, SessionResult]:
    return await client.start_workflow(
        SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
    )


async def run(client: Client, task_queue: str, session: SessionBooking) -> SessionResult:
    return await client.execute_workflow(
        SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
    )


async def sleep_until(env: WorkflowEnvironment, when: datetime) -> None:
    """Skip the test server's clock to `when` (it waits for work in flight first)."""
    await env.sleep(when - await env.get_current_time())


async def trail(pool: asyncpg.Pool, session_id: str) -> list[AuditEvent]:
    """The session's audit trail, checked to be numbered 1..n without gaps."""
    events = await AuditStore(pool).trail(session_id)
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    return events


def types(events: list[AuditEvent]) -> list[str]:
    return [event.event_type.value for event in events]


def only(events: list[AuditEvent], event_type: str) -> AuditEvent:
    found = [event for event in events if event.event_type == event_type]
    assert len(found) == 1, f"expected one {event_type}, got {types(events)}"
    return found[0]


def every(events: list[AuditEvent], event_type: str) -> list[AuditEvent]:
    return [event for event in events if event.event_type == event_type]


async def placed(pool: asyncpg.Pool, session_id: str) -> list[tuple[str, str, str, str]]:
    """(idempotency key, kind, number, result) of everything the phone placed, in order."""
    rows = await SimulatedPhone(pool).placed(session_id)
    return [(row["idempotency_key"], row["kind"], row["to_number"], row["result"])
            for row in rows]


def key(session: SessionBooking, step: str) -> str:
    return f"{session.workflow_id}/{step}"


async def inbox(pool: asyncpg.Pool, session_id: str) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT key, therapist_id, kind, priority, title FROM therapist_inbox"
        " WHERE session_id = $1",
        session_id,
    )
    return {row["key"]: row for row in rows}


async def stored_plan(pool: asyncpg.Pool, session_id: str) -> str | None:
    plan: str | None = await pool.fetchval(
        "SELECT plan FROM follow_up_plans WHERE session_id = $1", session_id
    )
    return plan

