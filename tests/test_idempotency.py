"""Retries never reach anyone twice and never write anything twice.

A worker can crash after a side effect happened and before Temporal heard about it; the
activity then runs again. These tests make that happen for real: the phone channel (or the
audit activity) does its work, then fails once, and the real retry policy runs it again
on the time-skipping server. The idempotency keys must turn the second run into a no-op
that reports the first run's result. The store's own guarantees are checked directly.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.audit import AuditActivities, NoShowRecord
from activities.outreach import Sender
from activities.therapist import TherapistActivities
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.domain.events import (
    Cancelled,
    Closed,
    GracePeriodExpired,
    OutreachAttempted,
    TherapistAlerted,
    new_event,
)
from missed_session.domain.models import (
    AttendanceSummary,
    AuditEvent,
    AuditEventType,
    CallResult,
    Concern,
    ConcernKind,
    FollowUpPlan,
    FollowUpTask,
    NoticeKind,
    Outcome,
    Priority,
    RiskTier,
    SessionBooking,
    SessionResult,
    TaskKind,
    TherapistNotice,
)
from missed_session.metrics import ServiceMetrics
from missed_session.store.append import AuditConflictError
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.follow_up_plans import FollowUpPlanStore
from missed_session.store.inbox import InboxStore
from tests.support.after_activity import AfterActivity
from tests.support.factories import booking, daytime, read_as
from worker import new_worker
from workflows.session import SessionWorkflow

SENDER = Sender("Alex", "+15555550100")
CLIENT_PHONE = "+14155550123"
"""The client's number in `tests.support.factories`."""


class SimulatedCrashError(RuntimeError):
    """The worker 'crashed' after the channel acted, before the result was reported."""


class CrashingPhone:
    """A phone channel that does the real work, then fails the first time for each key.

    Only the kinds named in `crash_on` ("call", "voicemail", "message") crash. `seen`
    counts how often each key reached the simulated phone, to prove the retry happened.
    """

    def __init__(self, pool: asyncpg.Pool, *, crash_on: set[str],
                 after_first: Behaviour | None = None) -> None:
        self._phone = SimulatedPhone(pool)
        self._crash_on = crash_on
        self._after_first = after_first
        self.seen: Counter[str] = Counter()

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        result = await self._phone.call(key, session_id, to)
        await self._maybe_crash("call", key, to)
        return result

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        result = await self._phone.leave_voicemail(key, session_id, to, text)
        await self._maybe_crash("voicemail", key, to)
        return result

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        result = await self._phone.deliver_message(key, session_id, to, text)
        await self._maybe_crash("message", key, to)
        return result

    async def _maybe_crash(self, kind: str, key: str, to: str) -> None:
        self.seen[key] += 1
        if kind in self._crash_on and self.seen[key] == 1:
            if self._after_first is not None:
                # The client would now behave differently: only the first call may count.
                await self._phone.script(to, self._after_first)
            raise SimulatedCrashError(key)


async def book(env: WorkflowEnvironment, **overrides: Any) -> SessionBooking:
    # 10:00 client time: the protocol stays inside the contact window.
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    return booking(**{**overrides, "start": start.isoformat()})


async def run_with_phone(
    client: Client, pool: asyncpg.Pool, task_queue: str, env: WorkflowEnvironment,
    phone: CrashingPhone, **overrides: Any,
) -> tuple[SessionBooking, SessionResult]:
    session = await book(env, **overrides)
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        result = await client.execute_workflow(
            SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
        )
    return session, result


async def trail_types(pool: asyncpg.Pool, session_id: str) -> list[str]:
    events = await AuditStore(pool).trail(session_id)
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    return [event.event_type.value for event in events]


async def rows_per_key(pool: asyncpg.Pool, session_id: str) -> dict[str, tuple[str, int]]:
    """idempotency key -> (kind, number of rows) in the simulated phone's log."""
    rows = await pool.fetch(
        "SELECT idempotency_key, min(kind) AS kind, count(*) AS n FROM sim_phone_log"
        " WHERE session_id = $1 GROUP BY idempotency_key",
        session_id,
    )
    return {row["idempotency_key"]: (row["kind"], row["n"]) for row in rows}


LADDER = [
    "scheduled", "grace_period_expired", "therapist_alerted",
    *["outreach_attempted", "voicemail_left"] * 3,
    "emergency_contact_called", "escalation_sent", "plan_created", "closed",
]


# -- outreach under retries ----------------------------------------------------------------


async def test_retried_call_places_no_second_call(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = CrashingPhone(pool, crash_on={"call"})

    session, result = await run_with_phone(client, pool, task_queue, time_skipping_env, phone)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    calls = [f"{session.workflow_id}/attempt-{n}/call" for n in (1, 2, 3)]
    assert [phone.seen[key] for key in calls] == [2, 2, 2]  # every call was retried
    logged = await rows_per_key(pool, session.session_id)
    assert {key: logged[key] for key in calls} == dict.fromkeys(calls, ("call", 1))
    assert sorted(kind for kind, _ in logged.values()) == ["call"] * 3 + ["message"] + [
        "voicemail"
    ] * 3
    assert await trail_types(pool, session.session_id) == LADDER


async def test_retried_voicemail_leaves_no_second_voicemail(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = CrashingPhone(pool, crash_on={"voicemail"})

    session, result = await run_with_phone(client, pool, task_queue, time_skipping_env, phone)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    voicemails = [f"{session.workflow_id}/attempt-{n}/voicemail" for n in (1, 2, 3)]
    assert [phone.seen[key] for key in voicemails] == [2, 2, 2]
    logged = await rows_per_key(pool, session.session_id)
    assert {key: logged[key] for key in voicemails} == dict.fromkeys(voicemails, ("voicemail", 1))
    assert sum(n for _, n in logged.values()) == 7
    assert await trail_types(pool, session.session_id) == LADDER


async def test_retried_escalation_reaches_the_emergency_contact_once(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = CrashingPhone(pool, crash_on={"message"})

    session, result = await run_with_phone(
        client, pool, task_queue, time_skipping_env, phone, protocol={"max_attempts": 1}
    )

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    escalation = f"{session.workflow_id}/escalation"
    assert phone.seen[escalation] == 2
    assert (await rows_per_key(pool, session.session_id))[escalation] == ("message", 1)
    assert "escalation_sent" in await trail_types(pool, session.session_id)


async def test_retried_call_reports_the_first_calls_result(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    # The client answers, the worker crashes before reporting it, and by the retry the
    # client's phone would no longer be answered: the retry must report the call that was
    # actually placed, not place (and report) another.
    await SimulatedPhone(pool).script(CLIENT_PHONE, Behaviour.ANSWERS)
    phone = CrashingPhone(pool, crash_on={"call"}, after_first=Behaviour.NO_ANSWER)

    session, result = await run_with_phone(client, pool, task_queue, time_skipping_env, phone)

    assert result.outcome is Outcome.REACHED
    assert result.attempts_made == 1
    call = f"{session.workflow_id}/attempt-1/call"
    assert phone.seen[call] == 2
    rows = await SimulatedPhone(pool).placed(session.session_id)
    assert [(row["idempotency_key"], row["result"]) for row in rows] == [(call, "answered")]
    events = await AuditStore(pool).trail(session.session_id)
    attempted = [e for e in events if e.event_type is AuditEventType.OUTREACH_ATTEMPTED]
    assert [read_as(e, OutreachAttempted).result for e in attempted] == [CallResult.ANSWERED]


# -- the audit trail under retries ---------------------------------------------------------


class CrashAfterActivity(AfterActivity):
    """Lets the real activity run, then fails its first attempt (once per activity id)."""

    def __init__(self, *activity_types: str) -> None:
        super().__init__(*activity_types)
        self.completed: Counter[str] = Counter()

    async def after_activity(self, info: activity.Info) -> None:
        self.completed[info.activity_id] += 1
        if info.attempt == 1:
            raise SimulatedCrashError(info.activity_id)


async def test_retried_audit_activity_writes_each_event_once(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    crash = CrashAfterActivity("record_event", "record_no_show", "document_no_show",
                               "record_closing")
    crashing_client = crash.client_with(client)
    session = await book(time_skipping_env, protocol={"max_attempts": 1})

    async with new_worker(crashing_client, pool, task_queue=task_queue, sender=SENDER):
        result = await client.execute_workflow(
            SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
        )

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    types = await trail_types(pool, session.session_id)
    assert types == [
        "scheduled", "grace_period_expired", "therapist_alerted", "outreach_attempted",
        "voicemail_left", "emergency_contact_called", "escalation_sent", "plan_created",
        "closed",
    ]
    # Every event was appended, lost, retried: the no-show's two by one activity, the
    # others one each (local activities, but for the no-show's).
    assert len(crash.completed) == len(types) - 1
    assert set(crash.completed.values()) == {2}


def event(session_id: str = "s-1", sequence: int = 1, **data: str | int | bool | None
          ) -> AuditEvent:
    return AuditEvent(
        session_id=session_id,
        sequence=sequence,
        event_type=AuditEventType.SCHEDULED,
        occurred_at=datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC),
        data=data,
    )


def cancelled(reason: str) -> AuditEvent:
    """Like `event`, but a row the typed vocabulary reads (the audit activity's metrics do)."""
    return new_event(session_id="s-1", sequence=1, occurred_at=event().occurred_at,
                     details=Cancelled(reason=reason))


async def audit_rows(pool: asyncpg.Pool, session_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT sequence, event_type, data FROM audit_events WHERE session_id = $1"
        " ORDER BY sequence",
        session_id,
    )


async def test_append_twice_writes_one_row(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    first = event(risk_tier="standard", grace_period_minutes=15)

    assert (await store.record([first])).new
    assert not (await store.record([first])).new
    assert not (await store.record([event(grace_period_minutes=15, risk_tier="standard")])).new

    rows = await audit_rows(pool, "s-1")
    assert len(rows) == 1
    assert json.loads(rows[0]["data"]) == {"risk_tier": "standard", "grace_period_minutes": 15}
    assert await store.trail("s-1") == [first]


async def test_a_different_event_in_a_closed_trail_is_a_conflict(pool: asyncpg.Pool) -> None:
    # (In an open trail it supersedes: see the audit activity's test below.)
    store = AuditStore(pool)
    await store.record([event(reason="first").model_copy(
        update={"event_type": AuditEventType.CLOSED})])

    with pytest.raises(AuditConflictError, match="s-1#1"):
        await store.record([event(reason="second").model_copy(
            update={"event_type": AuditEventType.CLOSED})])
    with pytest.raises(AuditConflictError):
        await store.record([event(reason="first").model_copy(
            update={"event_type": AuditEventType.CANCELLED}
        )])

    rows = await audit_rows(pool, "s-1")
    assert [json.loads(row["data"]) for row in rows] == [{"reason": "first"}]


async def test_the_audit_activity_supersedes_another_branch_and_says_where(
    pool: asyncpg.Pool,
) -> None:
    # Another event at the place: rows of a workflow task that failed, whose retry took
    # another branch. They stay, marked superseded; the event follows the marker.
    activities = AuditActivities(AuditStore(pool), InboxStore(pool),
                                 ServiceMetrics(MetricMeter.noop))
    env = ActivityEnvironment()
    await env.run(activities.record_event, cancelled("first"))
    await env.run(activities.record_event, cancelled("first"))  # a retry: fine

    recorded = await env.run(activities.record_event, cancelled("second"))

    assert recorded == cancelled("second").model_copy(update={"sequence": 3})
    rows = await audit_rows(pool, "s-1")
    assert [row["event_type"] for row in rows] == ["cancelled", "trail_superseded", "cancelled"]


async def test_the_audit_activity_refuses_a_closed_trail_without_retrying(
    pool: asyncpg.Pool,
) -> None:
    activities = AuditActivities(AuditStore(pool), InboxStore(pool),
                                 ServiceMetrics(MetricMeter.noop))
    env = ActivityEnvironment()
    closed = new_event(session_id="s-1", sequence=1, occurred_at=event().occurred_at,
                       details=Closed(outcome=Outcome.ATTENDED, attempts=0))
    await env.run(activities.record_event, closed)

    with pytest.raises(ApplicationError) as refused:
        await env.run(activities.record_event, cancelled("second"))

    assert refused.value.type == "AuditConflict"
    assert refused.value.non_retryable
    assert len(await audit_rows(pool, "s-1")) == 1


async def test_closing_twice_writes_one_event_and_one_attendance_row(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    closed = event(outcome="attended", attempts=0).model_copy(
        update={"event_type": AuditEventType.CLOSED}
    )
    for expected in (True, False):
        written = await store.record([closed], attendance=Attendance(
            client_ref="c-1", therapist_id="t-ana", start=closed.occurred_at,
            outcome=Outcome.ATTENDED))
        assert bool(written.new) is expected

    assert len(await audit_rows(pool, "s-1")) == 1
    assert await pool.fetchval("SELECT count(*) FROM attendance WHERE session_id = 's-1'") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET data = '{\"reason\": \"rewritten\"}'::jsonb",
        "UPDATE audit_events SET event_type = 'cancelled' WHERE sequence = 1",
        "DELETE FROM audit_events WHERE session_id = 's-1'",
        "TRUNCATE audit_events",
    ],
)
async def test_the_database_refuses_to_change_the_audit_trail(
    pool: asyncpg.Pool, statement: str
) -> None:
    store = AuditStore(pool)
    original = event(reason="first")
    await store.record([original])

    # The service's role lacks the privilege (the trigger behind it: test_audit_store.py).
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await pool.execute(statement)

    assert await store.trail("s-1") == [original]


# -- the therapist's inbox and the follow-up plan ------------------------------------------


def notice(title: str = "No-show: outreach to the client has started") -> TherapistNotice:
    return TherapistNotice(
        key="s-1/no-show-alert",
        session_id="s-1",
        therapist_id="t-ana",
        kind=NoticeKind.ALERT,
        priority=Priority.ROUTINE,
        title=title,
    )


async def inbox_titles(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT title FROM therapist_inbox WHERE session_id = 's-1'")
    return [row["title"] for row in rows]


async def test_the_same_notice_twice_lands_once(pool: asyncpg.Pool) -> None:
    store = InboxStore(pool)

    assert await store.add_notice(notice()) is True
    assert await store.add_notice(notice("a retry must not replace the first")) is False

    assert await inbox_titles(pool) == ["No-show: outreach to the client has started"]


async def test_the_notify_activity_retried_delivers_once(pool: asyncpg.Pool) -> None:
    activities = TherapistActivities(InboxStore(pool))
    env = ActivityEnvironment()

    await env.run(activities.notify_therapist, notice())
    await env.run(activities.notify_therapist, notice())

    assert await inbox_titles(pool) == ["No-show: outreach to the client has started"]


def plan(no_shows: int) -> FollowUpPlan:
    concerns = (
        (Concern(kind=ConcernKind.ENGAGEMENT_MOTIVATION,
                 reason=f"{no_shows} no-shows in the last 90 days"),)
        if no_shows >= 2 else ()
    )
    return FollowUpPlan(
        attendance=AttendanceSummary(
            window_days=90, sessions=no_shows, no_shows=no_shows,
            consecutive_no_shows=no_shows, late_arrivals=0,
        ),
        concerns=concerns,
        tasks=(FollowUpTask(kind=TaskKind.REBOOK, priority=Priority.ROUTINE,
                            description="Offer the client a new time"),),
    )


async def test_the_first_follow_up_plan_stands(pool: asyncpg.Pool) -> None:
    store = FollowUpPlanStore(pool)
    first, retried = plan(no_shows=1), plan(no_shows=2)

    assert await store.save_plan(session_id="s-1", client_ref="c-1", plan=first) == first
    # A retry that saw a different attendance history gets the recorded plan back.
    assert await store.save_plan(session_id="s-1", client_ref="c-1", plan=retried) == first

    rows = await pool.fetch("SELECT plan FROM follow_up_plans WHERE session_id = 's-1'")
    assert [FollowUpPlan.model_validate_json(row["plan"]) for row in rows] == [first]



async def test_the_no_shows_records_refuse_to_plan_without_the_notice_activities(
    pool: asyncpg.Pool,
) -> None:
    """No plan would read as "no roster": the alert would never climb. Refused, unwritten."""
    activities = AuditActivities(AuditStore(pool), InboxStore(pool),
                                 ServiceMetrics(MetricMeter.noop))
    notice = TherapistNotice(key="s-plan/no-show-alert", session_id="s-plan",
                             therapist_id="t-1", kind=NoticeKind.ALERT,
                             priority=Priority.URGENT, title="No-show")
    at = event().occurred_at
    record = NoShowRecord(
        expired=new_event(session_id="s-plan", sequence=1, occurred_at=at,
                          details=GracePeriodExpired(grace_period_minutes=15)),
        notice=notice,
        alerted=new_event(session_id="s-plan", sequence=2, occurred_at=at,
                          details=TherapistAlerted(notice=notice.key)),
        plan_for=RiskTier.HIGH)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.document_no_show, record)
    assert refused.value.type == "NoNoticePlanner"
    assert refused.value.non_retryable
