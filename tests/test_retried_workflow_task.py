"""A workflow task that wrote audit rows and then failed is run again, and the session goes on.

A worker killed after a local activity committed its row, a server restart, a task timeout:
the task's local activities left rows, but the task never completed, so its markers are not
in the history. The retried task runs the same code with a later `workflow.now()` and writes
the same events again, at later times. Here a workflow interceptor fails the task for real
(an exception in workflow code fails the task, not the workflow) right after a chosen
event's row is written, on the dev server, whose clock runs: the retry must find its first
write, keep its time, and carry the session to its outcome.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import StartLocalActivityInput, WorkflowOutboundInterceptor

from activities.audit import AuditActivities
from activities.outreach import Sender
from demo import daytime_zone
from missed_session.audit import cli as audit_cli
from missed_session.audit.verify import verify_session
from missed_session.domain import events
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    Outcome,
    SessionBooking,
    SessionResult,
)
from missed_session.metrics import ServiceMetrics
from missed_session.store.audit import AuditStore
from missed_session.store.inbox import InboxStore
from missed_session.temporal import search_attributes
from tests.support.after_activity import AfterActivity
from tests.support.factories import booking_data
from tests.support.servers import dev_server
from worker import WORKFLOW_RUNNER, new_worker
from workflows.session import SessionWorkflow

__all__ = ["dev_server"]  # the fixture (tests/support/servers.py), used by name

SENDER = Sender("Alex", "+15555550100")


def soon_booking(now: datetime) -> SessionBooking:
    """A session starting now in a client zone where it is daytime, protocol in seconds.

    The contact window is judged on the real clock, so the client lives where it is day.
    """
    data = booking_data(start=(now + timedelta(seconds=1)).isoformat(),
                        protocol={"max_attempts": 1, "time_scale": 300.0})
    data["client"] = {**data["client"], "time_zone": daytime_zone(now)}
    return SessionBooking.model_validate(data)


class FailTaskAfterRecord(AfterActivity):
    """Fails the workflow task once, just after the row of `event_type` is written.

    `first_times` keeps when the first write happened and `retry_times` when the retried
    task wrote the same event again (the workflow's clock at each): the test checks the
    retry really came later. `first_written`: the time the first write gave its event (the
    workflow's clock, or for an outreach step the time the activity reports it went out).
    """

    def __init__(self, event_type: AuditEventType, *, then_write: str | None = None) -> None:
        super().__init__("record_event", fail_task=True)
        self.event_type = event_type
        self.then_write = then_write
        """A cancellation reason: the failing task writes a `cancelled` row after the event,
        a branch its retry will not take (as a task that saw less than its retry does)."""
        self.first_times: list[datetime] = []
        self.first_written: list[datetime] = []
        self.retry_times: list[datetime] = []

    def chosen(self, input: StartLocalActivityInput) -> bool:
        event = input.args[0] if input.args else None
        return (super().chosen(input) and isinstance(event, AuditEvent)
                and event.event_type is self.event_type)

    def started(self, input: StartLocalActivityInput) -> None:
        (self.retry_times if self.failed else self.first_times).append(workflow.now())
        if not self.failed:
            self.first_written.append(input.args[0].occurred_at)

    async def before_failing(self, next: WorkflowOutboundInterceptor,
                             input: StartLocalActivityInput) -> None:
        if self.then_write is None:
            return
        event = input.args[0]
        other = events.new_event(
            session_id=event.session_id, sequence=event.sequence + 1,
            occurred_at=workflow.now(), details=events.Cancelled(reason=self.then_write),
        )
        await next.start_local_activity(dataclasses.replace(input, args=[other]))


async def run_with(fail: FailTaskAfterRecord, dev_server: WorkflowEnvironment,
                   pool: asyncpg.Pool) -> tuple[SessionBooking, SessionResult]:
    """Run a soon session to its end on a worker whose client carries the interceptor."""
    client = dev_server.client
    task_queue = f"tq-{uuid.uuid4().hex}"
    session = soon_booking(await dev_server.get_current_time())
    async with new_worker(fail.client_with(client), pool, task_queue=task_queue,
                          sender=SENDER):
        result = await client.execute_workflow(
            SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue,
            execution_timeout=timedelta(minutes=3),
        )
    return session, result


@pytest.mark.parametrize("event_type", [
    AuditEventType.SCHEDULED,            # the first write of the session
    AuditEventType.OUTREACH_ATTEMPTED,   # mid-ladder, with the no-show's batch before it
    AuditEventType.ESCALATION_SENT,      # the step that reaches the emergency contact
])
async def test_a_retried_task_finds_its_first_write_and_the_session_goes_on(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, event_type: AuditEventType
) -> None:
    fail = FailTaskAfterRecord(event_type)
    client = dev_server.client
    session, result = await run_with(fail, dev_server, pool)

    assert fail.failed
    assert len(fail.first_times) == 1
    assert len(fail.retry_times) == 1
    assert fail.retry_times[0] > fail.first_times[0]
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    history = await client.get_workflow_handle(session.workflow_id).fetch_history()
    failed_tasks = [
        e for e in history.events if e.HasField("workflow_task_failed_event_attributes")
    ]
    assert len(failed_tasks) == 1
    store = AuditStore(pool)
    trail = await store.trail(session.session_id)
    assert [e.sequence for e in trail] == list(range(1, len(trail) + 1))
    assert [e.event_type for e in trail].count(event_type) == 1
    written = next(e for e in trail if e.event_type is event_type)
    assert written.occurred_at == fail.first_written[0]  # the first write stands
    assert trail[-1].event_type is AuditEventType.CLOSED
    assert (await verify_session(store, session.session_id)).ok


@pytest.mark.parametrize("event_type", [
    AuditEventType.SCHEDULED,           # the no-show's pair (an ordinary activity) meets it
    AuditEventType.OUTREACH_ATTEMPTED,    # mid-ladder
])
async def test_a_retried_task_that_takes_another_branch_supersedes_the_rows_it_left(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, event_type: AuditEventType
) -> None:
    # The failed task wrote one more row, of a branch its retry does not take (as when a
    # call-back arrived while the worker was dead): the row stays, marked superseded, and
    # the session goes on to its outcome with a trail that verifies and a history that
    # replays against it.
    fail = FailTaskAfterRecord(event_type, then_write="a branch the history does not hold")
    client = dev_server.client
    session, result = await run_with(fail, dev_server, pool)

    assert fail.failed
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    store = AuditStore(pool)
    trail = await store.trail(session.session_id)
    assert [e.sequence for e in trail] == list(range(1, len(trail) + 1))
    [orphan] = [e for e in trail if e.event_type is AuditEventType.CANCELLED]
    [marker] = [e for e in trail if e.event_type is AuditEventType.TRAIL_SUPERSEDED]
    assert events.read(marker) == events.TrailSuperseded(first=orphan.sequence,
                                                         last=orphan.sequence)
    assert marker.sequence == orphan.sequence + 1
    course = events.live(trail)
    assert orphan not in course
    assert [e.event_type for e in course].count(event_type) == 1
    assert course[-1].event_type is AuditEventType.CLOSED
    assert (await verify_session(store, session.session_id)).ok
    replay = await audit_cli.run_replay(
        audit_cli.ReplayRequest(session.session_id), client, store,
        audit_cli.ReplaySetup([SessionWorkflow], WORKFLOW_RUNNER), progress=lambda *_: None,
    )
    assert replay.ok, replay.text


async def test_a_retried_task_that_meets_a_closed_trail_fails_loudly(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    # A closed trail at the session's places (a second writer, a workflow started again
    # under a closed session's id): the trail must not be papered over, and a person must
    # hear of it.
    client: Client = dev_server.client
    task_queue = f"tq-{uuid.uuid4().hex}"
    now = await dev_server.get_current_time()
    session = soon_booking(now)
    store = AuditStore(pool)
    stale = events.new_event(session_id=session.session_id, sequence=1, occurred_at=now,
                             details=events.Closed(outcome=Outcome.ATTENDED, attempts=0))
    assert (await store.record([stale])).new
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER):
        with pytest.raises(WorkflowFailureError) as failure:
            await client.execute_workflow(
                SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue,
                execution_timeout=timedelta(minutes=1),
            )
    assert "audit trail" in str(failure.value.cause)
    description = await client.get_workflow_handle(session.workflow_id).describe()
    status = description.typed_search_attributes.get(search_attributes.SESSION_STATUS)
    assert status == "failed"
    inbox = await pool.fetch(
        "SELECT kind, priority, title FROM therapist_inbox WHERE session_id = $1",
        session.session_id,
    )
    assert [(row["kind"], row["priority"]) for row in inbox] == [("task", "urgent")]
    assert "audit trail" in inbox[0]["title"]

    # Compliance sees it too: replay --all names the stopped session; verify --all counts
    # its trail among those not closed.
    replay = await audit_cli.run_replay(
        audit_cli.ReplayRequest(None), client, store,
        audit_cli.ReplaySetup([SessionWorkflow], WORKFLOW_RUNNER), progress=lambda *_: None,
    )
    assert not replay.ok
    [line] = [line for line in replay.text.splitlines() if session.session_id in line]
    assert line.startswith(f"MISMATCH {session.session_id}: the workflow failed before the "
                           "session closed: TrailRefused: the audit trail refused event #1 "
                           "(AuditConflict)")
    verify = await audit_cli.run_verify(audit_cli.VerifyRequest(None), store)
    assert "1 not closed (running, or stopped early" in verify.text.splitlines()[-1]


async def test_an_event_postgresql_cannot_store_is_refused_for_good_not_retried(
    pool: asyncpg.Pool,
) -> None:
    # Past the models' own refusal of control characters, as a defect elsewhere could send:
    # PostgreSQL cannot keep a NUL in text, and every retry would fail the same way.
    audit = AuditActivities(AuditStore(pool), InboxStore(pool),
                            ServiceMetrics(Runtime.default().metric_meter))
    event = AuditEvent(session_id="s-nul", sequence=1, event_type=AuditEventType.CANCELLED,
                       occurred_at=datetime.now(UTC),
                       data={"schema_version": 1, "reason": "fine"})
    poisoned = event.model_copy(update={"data": {"schema_version": 1, "reason": "x\x00secret"}})
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(audit.record_event, poisoned)
    assert refused.value.type == "UnwritableEvent"
    assert refused.value.non_retryable
    assert "secret" not in str(refused.value)
    assert await AuditStore(pool).trail("s-nul") == []
