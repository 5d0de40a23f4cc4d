"""News that arrives while a session closes never takes a place its `closed` holds.

The workflow task that writes `closed` (the local activity `record_closing`) also completes
the workflow. News that reaches the server while that task runs (a notice's signal, a
joining session's signal, a clinician's note, a client's STOP) makes the server refuse the
completion (`UnhandledCommand`): the task fails after its row was written, and its retry
applies the news before the protocol resumes, from the facts of the last completed task.
Before the fix, a handler then numbered its event at a place the closed trail holds, the
store refused it (`AuditConflict`, the trail is final) and the session failed
(`TrailRefused`). Here an activity interceptor sends the news right after `record_closing`
wrote its row, on the dev server with real PostgreSQL, so the task fails for real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from demo import daytime_zone
from missed_session.application.updates import Sent, Stage, send_update
from missed_session.audit import cli as audit_cli
from missed_session.audit.verify import verify_session
from missed_session.domain.facts import CLOSING, NoticeNews, SessionFacts
from missed_session.domain.models import (
    AuditEventType,
    Cancellation,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    Outcome,
    ResponseChannel,
    SessionBooking,
    SessionResult,
    SessionStatus,
    TextReply,
)
from missed_session.domain.person import LadderJoin, PersonReached
from missed_session.store.audit import AuditStore
from tests.support.after_activity import AfterActivity
from tests.support.factories import booking, booking_data
from tests.support.servers import dev_server
from worker import WORKFLOW_RUNNER, new_worker
from workflows.clinicians import NOTICE_NEWS
from workflows.person import JOIN_SIGNAL, REACHED_SIGNAL
from workflows.session import SessionWorkflow

__all__ = ["dev_server"]  # the fixture (tests/support/servers.py), used by name

pytestmark = pytest.mark.server

UNHANDLED_COMMAND = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
"""A signal arrived while the task that completes the workflow ran."""
TASK_FAILED = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE
"""The task failed in workflow code (as a worker that died there)."""

SENDER = Sender("Alex", "+15555550100")


def soon_booking(now: datetime) -> SessionBooking:
    """A session starting now where it is daytime for the client, its protocol in seconds."""
    data = booking_data(start=(now + timedelta(seconds=1)).isoformat(),
                        protocol={"max_attempts": 1, "time_scale": 300.0})
    data["client"] = {**data["client"], "time_zone": daytime_zone(now)}
    return SessionBooking.model_validate(data)


News = Callable[[Client, str], Awaitable[Any]]
"""What arrives while the session closes, sent through the Temporal client to a workflow."""


class NewsWhileClosing(AfterActivity):
    """Sends `news` once, after `record_closing` wrote its row, before its task completes.

    A signal makes the server refuse the task's completion by itself. An update does not
    (the server completes the workflow and tells the update's sender it closed), so with
    `fail_task` the news is sent without waiting for its answer and the task then fails:
    its retry hears the update.
    """

    def __init__(self, client: Client, news: News, *, fail_task: bool = False) -> None:
        super().__init__("record_closing", fail_task=fail_task)
        self.client = client
        self.news = news
        self.sent = False
        self.answers: list[object] = []
        self.sending: asyncio.Task[None] | None = None

    async def after_activity(self, info: activity.Info) -> None:
        if not info.workflow_id or self.sent:
            return
        self.sent = True
        if self.fail_task:  # its answer comes after the retried task: not awaited here
            self.sending = asyncio.create_task(self.send(info.workflow_id))
            await asyncio.sleep(1)  # it reaches the server before the task fails
        else:
            await self.send(info.workflow_id)

    async def send(self, workflow_id: str) -> None:
        try:
            self.answers.append(await self.news(self.client, workflow_id))
        except Exception as error:
            self.answers.append(error)


async def run_with(news: News, dev_server: WorkflowEnvironment, pool: asyncpg.Pool, *,
                   before: News | None = None, fail_task: bool = False,
                   ) -> tuple[SessionBooking, SessionResult, NewsWhileClosing]:
    """Run a soon session to its end; `news` arrives as it closes; `before` once started."""
    client = dev_server.client
    task_queue = f"tq-{uuid.uuid4().hex}"
    session = soon_booking(await dev_server.get_current_time())
    interceptor = NewsWhileClosing(client, news, fail_task=fail_task)
    async with new_worker(interceptor.client_with(client), pool, task_queue=task_queue,
                          sender=SENDER):
        handle = await client.start_workflow(
            SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue,
            execution_timeout=timedelta(minutes=3),
        )
        if before is not None:
            await before(client, handle.id)
        result = await handle.result()
        if interceptor.sending is not None:
            await interceptor.sending
    return session, result, interceptor


async def assert_closed_once(dev_server: WorkflowEnvironment, pool: asyncpg.Pool,
                             session: SessionBooking, cause: WorkflowTaskFailedCause.ValueType,
                             ) -> None:
    """The closing task failed and was retried; the trail ends with its one `closed`."""
    history = await dev_server.client.get_workflow_handle(session.workflow_id).fetch_history()
    failed = [e.workflow_task_failed_event_attributes for e in history.events
              if e.HasField("workflow_task_failed_event_attributes")]
    assert [f.cause for f in failed] == [cause]
    store = AuditStore(pool)
    trail = await store.trail(session.session_id)
    assert [e.sequence for e in trail] == list(range(1, len(trail) + 1))
    assert [e.event_type for e in trail].count(AuditEventType.CLOSED) == 1
    assert trail[-1].event_type is AuditEventType.CLOSED
    assert AuditEventType.TRAIL_SUPERSEDED not in [e.event_type for e in trail]
    assert (await verify_session(store, session.session_id)).ok
    replay = await audit_cli.run_replay(  # the history replays, and agrees with the trail
        audit_cli.ReplayRequest(session.session_id), dev_server.client, store,
        audit_cli.ReplaySetup([SessionWorkflow], WORKFLOW_RUNNER), progress=lambda *_: None,
    )
    assert replay.ok, replay.text


def acknowledged(client: Client, workflow_id: str) -> Awaitable[None]:
    """A notice's word (a signal): its own trail keeps it."""
    return client.get_workflow_handle(workflow_id).signal(NOTICE_NEWS, NoticeNews(
        notice="x/no-show-alert", state="acknowledged", clinician_id="t-ana"))


def joined(client: Client, workflow_id: str) -> Awaitable[None]:
    """A session of the same person joins this one's ladder (a signal)."""
    return client.get_workflow_handle(workflow_id).signal(
        JOIN_SIGNAL, LadderJoin(session_id=f"s-{uuid.uuid4().hex[:10]}"))


async def noted(client: Client, workflow_id: str) -> Sent:
    """A clinician's note (an update), sent as the application sends it."""
    return await send_update(client, workflow_id, "add_note", ClinicianDecision(
        clinician_id="t-ana", reason="spoke to the client's GP", authenticated_by="test"),
        update_id=f"note-{uuid.uuid4().hex}", wait=None)


async def stopped(client: Client, workflow_id: str) -> Sent:
    """The client's STOP (an update), sent as the application sends it."""
    return await send_update(client, workflow_id, "text_reply", TextReply(body="STOP"),
                             update_id=f"stop-{uuid.uuid4().hex}", wait=None)


def reached(client: Client, workflow_id: str) -> Awaitable[None]:
    """The person came back through a joining session (a signal): noted, never recorded."""
    return client.get_workflow_handle(workflow_id).signal(REACHED_SIGNAL, PersonReached(
        session_id=f"s-{uuid.uuid4().hex[:10]}",
        response=ClientResponse(channel=ResponseChannel.TEXT, responder="client")))


def decided(kind: str, **fields: str) -> News:
    """A clinician's decision (an update), sent as the application sends it."""
    async def send(client: Client, workflow_id: str) -> Sent:
        return await send_update(client, workflow_id, kind, ClinicianDecision(
            clinician_id="t-ana", reason="the practice reached the client", **fields),
            update_id=f"{kind}-{uuid.uuid4().hex}", wait=None)
    send.__name__ = kind
    return send


async def responded(client: Client, workflow_id: str) -> Sent:
    """The client got back in touch (an update)."""
    return await send_update(client, workflow_id, "client_responded", ClientResponse(
        channel=ResponseChannel.CALL, responder="client"),
        update_id=f"responded-{uuid.uuid4().hex}", wait=None)


async def late(client: Client, workflow_id: str) -> Sent:
    """A late check-in (an update)."""
    return await send_update(client, workflow_id, "check_in", CheckIn(),
                             update_id=f"late-{uuid.uuid4().hex}", wait=None)


async def checked_in(client: Client, workflow_id: str) -> None:
    """The front desk's check-in once the session has begun, sent as the application does
    (again, same id, until settled: the server aborts an update whose task failed)."""
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(100):
        if (await handle.query(SessionWorkflow.state)).status is SessionStatus.WAITING:
            break
        await asyncio.sleep(0.2)
    sent = await send_update(client, workflow_id, "check_in", CheckIn(),
                             update_id=f"check-in-{uuid.uuid4().hex}", wait=None)
    assert sent.stage is Stage.COMPLETED, sent


async def test_a_notice_news_as_an_attended_session_closes(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    # The check-in's task wrote `checked_in` and `closed`, and the notice's signal made the
    # server refuse its completion: the server also aborts the check-in (its sender sends
    # it again), so the retried task hears the news with nothing of the check-in. The news
    # meets the closed trail, is let go, and the check-in sent again closes the session.
    session, result, sent = await run_with(acknowledged, dev_server, pool, before=checked_in)
    assert sent.sent
    assert result.outcome is Outcome.ATTENDED
    await assert_closed_once(dev_server, pool, session, UNHANDLED_COMMAND)
    trail = await AuditStore(pool).trail(session.session_id)
    assert AuditEventType.CLINICIAN_ACKNOWLEDGED not in [e.event_type for e in trail]


@pytest.mark.parametrize("news", [noted, stopped])
async def test_an_update_as_an_attended_session_closes(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, news: News
) -> None:
    session, result, sent = await run_with(news, dev_server, pool, before=checked_in,
                                           fail_task=True)
    assert sent.failed
    assert result.outcome is Outcome.ATTENDED
    await assert_closed_once(dev_server, pool, session, TASK_FAILED)
    [answer] = sent.answers
    assert isinstance(answer, Sent)
    assert answer.stage in {Stage.REFUSED, Stage.GONE}, answer


async def test_a_joining_session_as_a_session_closes_after_its_follow_up(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    # The demo's case: the retried task applies the signal in follow-up, before the
    # protocol resumes; the join is not recorded (the joiner's trail holds it).
    session, result, sent = await run_with(joined, dev_server, pool)
    assert sent.sent
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    await assert_closed_once(dev_server, pool, session, UNHANDLED_COMMAND)


@pytest.mark.parametrize("news", [acknowledged, reached])
async def test_other_signals_as_a_session_closes_after_its_follow_up(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, news: News
) -> None:
    # A notice's word in follow-up was the demo's case (4565274 skips it, and so does the
    # trail's gate); a person reached through a joiner is noted, never recorded.
    session, result, sent = await run_with(news, dev_server, pool)
    assert sent.sent
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    await assert_closed_once(dev_server, pool, session, UNHANDLED_COMMAND)


@pytest.mark.parametrize("news", [
    noted, stopped, late, responded, decided("mark_safe"), decided("stand_down"),
    decided("escalate_now", legal_basis="vital interests"),
])
async def test_an_update_as_a_session_closes_after_its_follow_up(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, news: News
) -> None:
    session, result, sent = await run_with(news, dev_server, pool, fail_task=True)
    assert sent.failed
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    await assert_closed_once(dev_server, pool, session, TASK_FAILED)
    [answer] = sent.answers
    assert isinstance(answer, Sent)
    assert answer.stage is Stage.REFUSED, answer
    if news in {noted, stopped}:  # the others were refused in follow-up before
        assert CLOSING in (answer.reason or ""), answer


def test_the_facts_say_when_closing_has_begun() -> None:
    booked = SessionFacts.booked(booking())
    assert not booked.closing_begun()
    waiting = booked.moved(SessionStatus.WAITING, "wait for a check-in", None)
    assert not waiting.closing_begun()
    assert waiting.noted(CheckIn()).closing_begun()  # it closes as attended in this task
    assert waiting.noted(Cancellation(reason="ill")).closing_begun()
    outreach = waiting.moved(SessionStatus.OUTREACH, "outreach attempt 1", None)
    assert not outreach.noted(CheckIn()).closing_begun()  # a late check-in: follow-up first
    for status in (SessionStatus.AWAITING_CLINICIAN, SessionStatus.HELD,
                   SessionStatus.ESCALATION, SessionStatus.NO_SHOW):
        assert not outreach.moved(status, None, None).closing_begun()
    assert outreach.moved(SessionStatus.FOLLOW_UP, "plan the follow-up", None).closing_begun()
    assert outreach.closing(Outcome.REACHED).closing_begun()
    assert outreach.moved(SessionStatus.CLOSED, None, None).closing_begun()
