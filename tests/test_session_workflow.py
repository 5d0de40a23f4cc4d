"""The session workflow, branch by branch, on the real servers.

Every test runs the real worker (`worker.new_worker`) against the time-skipping Temporal
test server, with the simulated phone and the audit trail in the embedded PostgreSQL:
hours of protocol pass in a fraction of a second. Starts are whole seconds ahead of the
*test server's* clock, not the wall clock: the server is shared by the whole run and is
ahead of the wall clock once earlier tests have skipped time.

Timing assertions allow `LATENCY` and no more; see there why any slack is needed at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outreach import PROVIDER_TRIES
from missed_session.application import Application, ResultKind
from missed_session.channels.base import ChannelUnavailableError
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.config import Settings
from missed_session.domain.events import (
    AwaitingClinician,
    Cancelled,
    CheckedIn,
    ClientResponded,
    ClinicianWaitTimedOut,
    Closed,
    EmergencyContactCalled,
    EscalationBlocked,
    EscalationSent,
    GracePeriodExpired,
    OutreachAttempted,
    OutreachFailed,
    OutreachSkipped,
    PlanCreated,
    Rescheduled,
    Scheduled,
    read,
)
from missed_session.domain.intake import BookingRejectedError, check_bookable
from missed_session.domain.messages import ensure_discreet
from missed_session.domain.models import (
    CallResult,
    Cancellation,
    Channel,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    ConcernKind,
    DecisionKind,
    Outcome,
    Reschedule,
    ResponseChannel,
    SessionBooking,
    SessionResult,
    SessionStatus,
    TaskKind,
)
from missed_session.temporal import search_attributes
from tests.support.factories import (
    CONSENT_DATE,
    booking,
    booking_data,
    read_as,
    without_consent,
)
from tests.support.servers import TEST_KEYS
from tests.support.session_workflow import (
    CLIENT_PHONE,
    CONTACT_PHONE,
    GRACE,
    HIGH_RISK_GRACE,
    LATENCY,
    OUTREACH_TRAIL,
    SENDER,
    begin,
    book,
    every,
    inbox,
    key,
    only,
    placed,
    run,
    sleep_until,
    stored_plan,
    trail,
    types,
)
from worker import new_worker
from workflows.session import SessionWorkflow

SPACING = timedelta(minutes=15)

ATTEMPT_TRAIL = ["outreach_attempted", "voicemail_left"]
TOLD = ["emergency_contact_called", "escalation_sent"]
"""The emergency contact's call (what the phone said), then what it meant: told."""
AWAITED_IN_VAIN = ["awaiting_clinician", "clinician_wait_timed_out"]
"""A blocked escalation waits for a clinician's decision; none came in the protocol's hours."""


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER) as running:
        yield running


@pytest.fixture
def phone(pool: asyncpg.Pool) -> SimulatedPhone:
    return SimulatedPhone(pool)


def refusal(error: WorkflowUpdateFailedError) -> str:
    """What the session answered when it refused an update."""
    assert isinstance(error.cause, ApplicationError)
    return error.cause.message


async def attendance(pool: asyncpg.Pool, session_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT client_ref, therapist_id, start_at, outcome FROM attendance"
        " WHERE session_id = $1",
        session_id,
    )
    assert row is not None
    return row


async def assert_closed_without_outreach(
    pool: asyncpg.Pool, session: SessionBooking, outcome: Outcome
) -> None:
    """Nothing reached the client, nobody was alerted, no plan was needed."""
    assert await placed(pool, session.session_id) == []
    assert await inbox(pool, session.session_id) == {}
    assert await stored_plan(pool, session.session_id) is None
    assert (await attendance(pool, session.session_id))["outcome"] == outcome.value


# -- before and during the grace period ----------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_check_in_before_the_start_is_attended(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start - timedelta(minutes=10))

    await handle.execute_update(SessionWorkflow.check_in, CheckIn())
    result = await handle.result()

    assert result.outcome is Outcome.ATTENDED
    assert result.attempts_made == 0
    assert result.plan is None
    events = await trail(pool, session.session_id)
    assert types(events) == ["scheduled", "checked_in", "closed"]
    assert read(only(events, "checked_in")) == CheckedIn(late=False)
    assert only(events, "checked_in").occurred_at < session.start
    assert read(only(events, "closed")) == Closed(outcome=Outcome.ATTENDED, attempts=0)
    await assert_closed_without_outreach(pool, session, Outcome.ATTENDED)


@pytest.mark.usefixtures("worker")
async def test_check_in_within_the_grace_period_is_attended(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + timedelta(minutes=10))
    state = await handle.query(SessionWorkflow.state)
    assert state.status is SessionStatus.WAITING
    assert state.next_action_at == session.start + GRACE

    await handle.execute_update(SessionWorkflow.check_in, CheckIn())
    result = await handle.result()

    assert result.outcome is Outcome.ATTENDED
    events = await trail(pool, session.session_id)
    assert types(events) == ["scheduled", "checked_in", "closed"]
    checked_in = only(events, "checked_in")
    assert read(checked_in) == CheckedIn(late=False)
    assert session.start + timedelta(minutes=10) <= checked_in.occurred_at
    assert checked_in.occurred_at < session.start + GRACE
    await assert_closed_without_outreach(pool, session, Outcome.ATTENDED)


@pytest.mark.usefixtures("worker")
async def test_cancel_before_the_start_is_cancelled(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)

    await handle.execute_update(SessionWorkflow.cancel, Cancellation(reason="client is unwell"))
    result = await handle.result()

    assert result.outcome is Outcome.CANCELLED
    events = await trail(pool, session.session_id)
    assert types(events) == ["scheduled", "cancelled", "closed"]
    assert read(only(events, "cancelled")) == Cancelled(reason="client is unwell")
    assert only(events, "cancelled").occurred_at < session.start
    await assert_closed_without_outreach(pool, session, Outcome.CANCELLED)


@pytest.mark.usefixtures("worker")
async def test_reschedule_then_check_in_is_attended(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    new_start = session.start + timedelta(hours=2)
    handle = await begin(client, task_queue, session)
    await handle.execute_update(
        SessionWorkflow.reschedule, Reschedule(start=new_start, reason="clash at work")
    )
    # Past the old start and its grace period: nothing may happen there any more.
    await sleep_until(time_skipping_env, session.start + timedelta(minutes=30))
    state = await handle.query(SessionWorkflow.state)
    assert state.status is SessionStatus.SCHEDULED
    assert state.next_action_at == new_start

    await sleep_until(time_skipping_env, new_start + timedelta(minutes=5))
    await handle.execute_update(SessionWorkflow.check_in, CheckIn())
    result = await handle.result()

    assert result.outcome is Outcome.ATTENDED
    events = await trail(pool, session.session_id)
    assert types(events) == ["scheduled", "rescheduled", "checked_in", "closed"]
    assert read(only(events, "rescheduled")) == Rescheduled(
        previous_start=session.start, start=new_start, reason="clash at work"
    )
    assert only(events, "checked_in").occurred_at >= new_start
    assert (await attendance(pool, session.session_id))["start_at"] == new_start
    await assert_closed_without_outreach(pool, session, Outcome.ATTENDED)


@pytest.mark.usefixtures("worker")
async def test_reschedule_then_no_show_measures_the_grace_period_from_the_new_start(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env, protocol={"max_attempts": 1})
    new_start = session.start + timedelta(hours=3)
    handle = await begin(client, task_queue, session)
    await handle.execute_update(SessionWorkflow.reschedule, Reschedule(start=new_start))

    result = await handle.result()

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    assert types(events)[:3] == ["scheduled", "rescheduled", "grace_period_expired"]
    expired = only(events, "grace_period_expired").occurred_at
    assert new_start + GRACE <= expired < new_start + GRACE + LATENCY
    assert (await attendance(pool, session.session_id))["start_at"] == new_start


@pytest.mark.usefixtures("worker")
async def test_reschedule_during_the_grace_period_starts_the_wait_over(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env, protocol={"max_attempts": 1})
    new_start = session.start + timedelta(hours=1)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + timedelta(minutes=5))
    assert (await handle.query(SessionWorkflow.state)).status is SessionStatus.WAITING

    await handle.execute_update(SessionWorkflow.reschedule, Reschedule(start=new_start))
    await sleep_until(time_skipping_env, session.start + timedelta(minutes=30))
    state = await handle.query(SessionWorkflow.state)
    assert state.status is SessionStatus.SCHEDULED
    assert state.next_action_at == new_start
    await handle.result()

    events = await trail(pool, session.session_id)
    assert types(events)[:3] == ["scheduled", "rescheduled", "grace_period_expired"]
    expired = only(events, "grace_period_expired").occurred_at
    assert new_start + GRACE <= expired < new_start + GRACE + LATENCY


# -- the no-show and the outreach ladder ---------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_no_check_in_expires_the_grace_period_on_time_and_outreach_follows(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    assert types(events)[:4] == ["scheduled", *OUTREACH_TRAIL, "outreach_attempted"]
    expired = only(events, "grace_period_expired")
    assert read(expired) == GracePeriodExpired(grace_period_minutes=15)
    assert GRACE <= expired.occurred_at - session.start < GRACE + LATENCY
    first_attempt = every(events, "outreach_attempted")[0]
    assert read(first_attempt) == OutreachAttempted(
        attempt=1, channel=Channel.CALL, result=CallResult.NO_ANSWER
    )
    assert first_attempt.occurred_at - expired.occurred_at < LATENCY
    alert = (await inbox(pool, session.session_id))[f"{session.session_id}/no-show-alert"]
    assert (alert["kind"], alert["priority"], alert["therapist_id"]) == (
        "alert", "routine", session.therapist_id
    )
    assert session.client.ref in alert["title"]


@pytest.mark.usefixtures("worker")
async def test_high_risk_grace_period_is_ten_minutes(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env, risk_tier="high")

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    assert read_as(only(events, "scheduled"), Scheduled).grace_period_minutes == 10
    expired = only(events, "grace_period_expired")
    assert read(expired) == GracePeriodExpired(grace_period_minutes=10)
    assert HIGH_RISK_GRACE <= expired.occurred_at - session.start < HIGH_RISK_GRACE + LATENCY
    alert = (await inbox(pool, session.session_id))[f"{session.session_id}/no-show-alert"]
    assert alert["priority"] == "urgent"


@pytest.mark.usefixtures("worker")
async def test_client_answers_the_first_call_is_reached(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
    phone: SimulatedPhone,
) -> None:
    await phone.script(CLIENT_PHONE, Behaviour.ANSWERS)
    session = await book(time_skipping_env)

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.REACHED
    assert result.attempts_made == 1
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, "outreach_attempted", "client_responded",
        "plan_created", "closed",
    ]
    attempted = read_as(only(events, "outreach_attempted"), OutreachAttempted)
    assert attempted.result is CallResult.ANSWERED
    assert read(only(events, "client_responded")) == ClientResponded(
        channel=ResponseChannel.CALL, responder="client", attempt=1, note=""
    )
    assert await placed(pool, session.session_id) == [
        (key(session, "attempt-1/call"), "call", CLIENT_PHONE, "answered"),
    ]
    assert (await attendance(pool, session.session_id))["outcome"] == "reached"


@pytest.mark.usefixtures("worker")
async def test_client_responds_between_attempts_is_reached_with_the_note(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))
    state = await handle.query(SessionWorkflow.state)
    assert (state.status, state.attempts_made, state.next_action) == (
        SessionStatus.OUTREACH, 1, "outreach attempt 2"
    )

    await handle.execute_update(
        SessionWorkflow.client_responded,
        ClientResponse(channel=ResponseChannel.TEXT, note="overslept; will call on Monday"),
    )
    result = await handle.result()

    assert result.outcome is Outcome.REACHED
    assert result.attempts_made == 1
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *ATTEMPT_TRAIL, "client_responded", "plan_created",
        "closed",
    ]
    assert read(only(events, "client_responded")) == ClientResponded(
        channel=ResponseChannel.TEXT, responder="client", note="overslept; will call on Monday"
    )
    assert [kind for _, kind, _, _ in await placed(pool, session.session_id)] == [
        "call", "voicemail",
    ]


@pytest.mark.usefixtures("worker")
async def test_late_check_in_during_outreach_is_attended_late(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))

    await handle.execute_update(SessionWorkflow.check_in, CheckIn())
    result = await handle.result()

    assert result.outcome is Outcome.ATTENDED_LATE
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *ATTEMPT_TRAIL, "checked_in", "plan_created", "closed",
    ]
    assert read(only(events, "checked_in")) == CheckedIn(late=True)
    assert result.plan is not None
    assert [concern.kind for concern in result.plan.concerns] == [ConcernKind.LOGISTICAL]
    assert TaskKind.REBOOK not in {task.kind for task in result.plan.tasks}
    assert (await attendance(pool, session.session_id))["outcome"] == "attended_late"


@pytest.mark.usefixtures("worker")
async def test_every_attempt_failing_escalates_after_the_last_attempt(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    assert result.attempts_made == 3
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *ATTEMPT_TRAIL * 3, *TOLD, "plan_created",
        "closed",
    ]
    assert [read_as(event, OutreachAttempted).attempt
            for event in every(events, "outreach_attempted")] == [1, 2, 3]
    assert read(only(events, "escalation_sent")) == EscalationSent(
        basis="consent on file", consent_date=CONSENT_DATE
    )
    # Each attempt waits the spacing after the previous one ended.
    voicemails = every(events, "voicemail_left")
    for left, call in zip(voicemails, every(events, "outreach_attempted")[1:], strict=False):
        assert SPACING <= call.occurred_at - left.occurred_at < SPACING + LATENCY
    assert await placed(pool, session.session_id) == [
        (key(session, "attempt-1/call"), "call", CLIENT_PHONE, "no_answer"),
        (key(session, "attempt-1/voicemail"), "voicemail", CLIENT_PHONE, "left"),
        (key(session, "attempt-2/call"), "call", CLIENT_PHONE, "no_answer"),
        (key(session, "attempt-2/voicemail"), "voicemail", CLIENT_PHONE, "left"),
        (key(session, "attempt-3/call"), "call", CLIENT_PHONE, "no_answer"),
        (key(session, "attempt-3/voicemail"), "voicemail", CLIENT_PHONE, "left"),
        (key(session, "escalation"), "message", CONTACT_PHONE, "delivered"),
    ]
    bodies = await pool.fetch(
        "SELECT body FROM sim_phone_log WHERE session_id = $1 AND body IS NOT NULL",
        session.session_id,
    )
    for row in bodies:
        assert ensure_discreet(row["body"])
        assert SENDER.callback_number in row["body"]
    assert (await attendance(pool, session.session_id))["outcome"] == "unreachable_escalated"


@pytest.mark.usefixtures("worker")
async def test_high_risk_escalates_after_the_first_failed_attempt_and_keeps_trying(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env, risk_tier="high")

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    assert result.attempts_made == 3
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *ATTEMPT_TRAIL, *TOLD, *ATTEMPT_TRAIL * 2,
        "plan_created", "closed",
    ]
    log = await placed(pool, session.session_id)
    assert [kind for _, kind, _, _ in log] == [
        "call", "voicemail", "message", "call", "voicemail", "call", "voicemail",
    ]
    assert [to for _, kind, to, _ in log if kind == "message"] == [CONTACT_PHONE]
    assert result.plan is not None
    assert ConcernKind.SAFETY in {concern.kind for concern in result.plan.concerns}


@pytest.mark.usefixtures("worker")
async def test_high_risk_client_responding_after_escalation_is_reached(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env, risk_tier="high")
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + HIGH_RISK_GRACE + timedelta(minutes=5))
    state = await handle.query(SessionWorkflow.state)
    assert (state.status, state.attempts_made) == (SessionStatus.OUTREACH, 1)

    await handle.execute_update(
        SessionWorkflow.client_responded,
        ClientResponse(channel=ResponseChannel.CALL, note="safe at home"),
    )
    result = await handle.result()

    assert result.outcome is Outcome.REACHED
    assert result.attempts_made == 1
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *ATTEMPT_TRAIL, *TOLD, "client_responded",
        "plan_created", "closed",
    ]
    assert read_as(only(events, "client_responded"), ClientResponded).note == "safe at home"
    assert result.plan is not None
    safety = [c for c in result.plan.concerns if c.kind is ConcernKind.SAFETY]
    assert [c.reason for c in safety] == ["client is assessed as high risk"]
    tasks = await inbox(pool, session.session_id)
    assert tasks[f"{session.session_id}/task/safety_check"]["priority"] == "urgent"


# -- escalation that cannot happen ---------------------------------------------------------


async def assert_escalation_blocked(
    pool: asyncpg.Pool, session: SessionBooking, result: SessionResult, reason: str
) -> None:
    assert result.outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED
    events = await trail(pool, session.session_id)
    blocked = only(events, "escalation_blocked")
    task_key = f"{session.session_id}/escalation-blocked"
    assert read(blocked) == EscalationBlocked(reason=reason, task=task_key)
    assert types(events)[-5:] == ["escalation_blocked", *AWAITED_IN_VAIN, "plan_created",
                                  "closed"]
    assert "escalation_sent" not in types(events)
    task = (await inbox(pool, session.session_id))[task_key]
    assert (task["kind"], task["priority"], task["therapist_id"]) == (
        "task", "urgent", session.therapist_id
    )
    assert reason in task["title"]
    assert "message" not in [kind for _, kind, _, _ in await placed(pool, session.session_id)]
    assert (await attendance(pool, session.session_id))["outcome"] == (
        "unreachable_escalation_blocked"
    )


@pytest.mark.usefixtures("worker")
async def test_no_consent_blocks_escalation_with_an_urgent_task(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = booking(**without_consent((await book(time_skipping_env)).model_dump(mode="json")))

    result = await run(client, task_queue, session)

    assert result.attempts_made == 3
    await assert_escalation_blocked(pool, session, result, "no consent on file")
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *ATTEMPT_TRAIL * 3, "escalation_blocked",
        *AWAITED_IN_VAIN, "plan_created", "closed",
    ]


@pytest.mark.usefixtures("worker")
async def test_no_emergency_contact_blocks_escalation(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    data = booking_data()
    session = await book(
        time_skipping_env, client={**data["client"], "emergency_contact": None}
    )

    result = await run(client, task_queue, session)

    await assert_escalation_blocked(pool, session, result, "no emergency contact on file")


@pytest.mark.usefixtures("worker")
async def test_unreachable_emergency_contact_blocks_escalation(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
    phone: SimulatedPhone,
) -> None:
    await phone.script(CONTACT_PHONE, Behaviour.INVALID_NUMBER)
    session = await book(time_skipping_env, protocol={"max_attempts": 1})

    result = await run(client, task_queue, session)

    reason = "emergency contact unreachable (invalid contact)"
    assert result.outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED
    events = await trail(pool, session.session_id)
    assert read_as(only(events, "escalation_blocked"), EscalationBlocked).reason == reason
    # What the phone said is in the trail, and the wait for a clinician names it.
    assert read(only(events, "emergency_contact_called")) == EmergencyContactCalled(
        result="failed", reason="invalid contact", basis="consent on file")
    awaiting = read_as(only(events, "awaiting_clinician"), AwaitingClinician).awaiting
    assert "the emergency contact was not reached: the call failed" in awaiting
    assert "escalation_sent" not in types(events)
    log = await placed(pool, session.session_id)
    assert log[-1] == (key(session, "escalation"), "message", CONTACT_PHONE, "invalid_number")
    task = (await inbox(pool, session.session_id))[f"{session.session_id}/escalation-blocked"]
    assert reason in task["title"]


@pytest.mark.usefixtures("worker")
async def test_invalid_number_fails_outreach_and_escalates_at_once(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
    phone: SimulatedPhone,
) -> None:
    await phone.script(CLIENT_PHONE, Behaviour.INVALID_NUMBER)
    session = await book(time_skipping_env)

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    assert result.attempts_made == 1
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, "outreach_failed", *TOLD, "plan_created",
        "closed",
    ]
    failed = only(events, "outreach_failed")
    assert read(failed) == OutreachFailed(
        attempt=1, channel=Channel.CALL, reason="invalid contact"
    )
    # Escalation was considered at once, not after the attempt spacing.
    assert only(events, "escalation_sent").occurred_at - failed.occurred_at < LATENCY
    assert await placed(pool, session.session_id) == [
        (key(session, "attempt-1/call"), "call", CLIENT_PHONE, "invalid_number"),
        (key(session, "escalation"), "message", CONTACT_PHONE, "delivered"),
    ]


class BrokenPhone:
    """The simulated phone with one step (`call` or `voicemail`) always failing: an outage."""

    def __init__(self, pool: asyncpg.Pool, broken: str) -> None:
        self._phone = SimulatedPhone(pool)
        self._broken = broken
        self.tries: Counter[str] = Counter()

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        self._fail_if_broken("call", key)
        return await self._phone.call(key, session_id, to)

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        self._fail_if_broken("voicemail", key)
        return await self._phone.leave_voicemail(key, session_id, to, text)

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        return await self._phone.deliver_message(key, session_id, to, text)

    def _fail_if_broken(self, step: str, key: str) -> None:
        if step == self._broken:
            self.tries[key] += 1
            msg = f"{step} provider unavailable"
            raise ChannelUnavailableError(msg)


async def run_with_phone(
    client: Client, pool: asyncpg.Pool, task_queue: str, session: SessionBooking,
    phone: BrokenPhone,
) -> SessionResult:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        return await run(client, task_queue, session)


async def test_voicemail_channel_outage_is_audited_and_the_ladder_continues(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = BrokenPhone(pool, "voicemail")
    session = await book(time_skipping_env)

    result = await run_with_phone(client, pool, task_queue, session, phone)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    assert result.attempts_made == 3
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *["outreach_attempted", "outreach_failed"] * 3,
        *TOLD, "plan_created", "closed",
    ]
    assert [read(event) for event in every(events, "outreach_failed")] == [
        OutreachFailed(
            attempt=n, channel=Channel.VOICEMAIL, reason="channel failed after retries"
        )
        for n in (1, 2, 3)
    ]
    # Each voicemail was tried as often as the outreach retry policy allows, then given up.
    assert set(phone.tries.values()) == {PROVIDER_TRIES}
    assert [kind for _, kind, _, _ in await placed(pool, session.session_id)] == [
        "call", "call", "call", "message",
    ]


async def test_call_channel_outage_is_a_failed_attempt_and_the_ladder_continues(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = BrokenPhone(pool, "call")
    session = await book(time_skipping_env)

    result = await run_with_phone(client, pool, task_queue, session, phone)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    assert result.attempts_made == 3
    events = await trail(pool, session.session_id)
    assert types(events) == [
        "scheduled", *OUTREACH_TRAIL, *["outreach_failed", "outreach_skipped"] * 3,
        *TOLD, "plan_created", "closed",
    ]
    assert [read(e) for e in events if e.event_type.value == "outreach_failed"] == [
        OutreachFailed(attempt=n, channel=Channel.CALL, reason="channel failed after retries")
        for n in (1, 2, 3)
    ]
    # Not silently: the voicemail has no line to go on, and the trail says so.
    assert [read(e) for e in events if e.event_type.value == "outreach_skipped"] == [
        OutreachSkipped(attempt=n, channel=Channel.VOICEMAIL,
                        reason="the call did not go through: no line to leave it on")
        for n in (1, 2, 3)
    ]
    assert phone.tries == {
        key(session, f"attempt-{n}/call"): PROVIDER_TRIES for n in (1, 2, 3)
    }
    assert await placed(pool, session.session_id) == [
        (key(session, "escalation"), "message", CONTACT_PHONE, "delivered"),
    ]


# -- messages at the wrong time, and the state query ---------------------------------------


@pytest.mark.usefixtures("worker")
async def test_cancel_and_reschedule_after_the_no_show_are_refused_with_the_reason(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))

    with pytest.raises(WorkflowUpdateFailedError) as cancel:
        await handle.execute_update(SessionWorkflow.cancel, Cancellation(reason="too late"))
    assert refusal(cancel.value) == "cancel refused: the session is already a no-show"
    with pytest.raises(WorkflowUpdateFailedError) as moved:
        await handle.execute_update(
            SessionWorkflow.reschedule, Reschedule(start=session.start + timedelta(days=1))
        )
    assert refusal(moved.value) == "reschedule refused: the session is already a no-show"
    answer = await handle.execute_update(
        SessionWorkflow.client_responded, ClientResponse(channel=ResponseChannel.EMAIL)
    )
    assert answer == "recorded: outreach stopped, the session closes as reached"
    result = await handle.result()

    assert result.outcome is Outcome.REACHED
    events = await trail(pool, session.session_id)
    assert "cancelled" not in types(events)
    assert "rescheduled" not in types(events)
    assert (await attendance(pool, session.session_id))["start_at"] == session.start
    with pytest.raises(RPCError):  # closed: nothing left to refuse or accept
        await handle.execute_update(SessionWorkflow.check_in, CheckIn())


@pytest.mark.usefixtures("worker")
async def test_a_reschedule_into_the_past_or_past_its_grace_period_is_refused_as_at_booking(
    client: Client, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)
    now = await time_skipping_env.get_current_time()
    long_ago = now - timedelta(hours=2)
    with pytest.raises(BookingRejectedError) as at_booking:
        check_bookable(session.model_copy(update={"start": long_ago}), now)

    with pytest.raises(WorkflowUpdateFailedError) as past_grace:
        await handle.execute_update(SessionWorkflow.reschedule, Reschedule(start=long_ago))
    assert refusal(past_grace.value) == f"reschedule refused: {at_booking.value}"
    with pytest.raises(WorkflowUpdateFailedError) as past:
        await handle.execute_update(
            SessionWorkflow.reschedule, Reschedule(start=now - timedelta(minutes=1))
        )
    assert refusal(past.value).startswith("reschedule refused: start: ")
    assert "is in the past" in refusal(past.value)

    state = await handle.query(SessionWorkflow.state)
    assert (state.status, state.next_action_at) == (SessionStatus.SCHEDULED, session.start)
    assert await handle.execute_update(SessionWorkflow.cancel, Cancellation()) == (
        "recorded: the session closes as cancelled"
    )
    assert (await handle.result()).outcome is Outcome.CANCELLED


@pytest.mark.usefixtures("worker")
async def test_state_query_reports_status_next_action_and_attempts(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book(time_skipping_env)
    handle = await begin(client, task_queue, session)

    before = await handle.query(SessionWorkflow.state)
    assert (before.status, before.next_action, before.next_action_at) == (
        SessionStatus.SCHEDULED, "wait for the start", session.start
    )
    assert before.attempts_made == 0
    assert before.outcome is None

    await sleep_until(time_skipping_env, session.start + timedelta(minutes=1))
    waiting = await handle.query(SessionWorkflow.state)
    assert (waiting.status, waiting.next_action_at) == (
        SessionStatus.WAITING, session.start + GRACE
    )

    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))
    first = await handle.query(SessionWorkflow.state)
    assert (first.status, first.attempts_made, first.next_action) == (
        SessionStatus.OUTREACH, 1, "outreach attempt 2"
    )
    assert first.next_action_at is not None
    assert SPACING <= first.next_action_at - (session.start + GRACE) < SPACING + LATENCY

    await sleep_until(time_skipping_env, first.next_action_at + timedelta(minutes=5))
    second = await handle.query(SessionWorkflow.state)
    assert (second.status, second.attempts_made) == (SessionStatus.OUTREACH, 2)

    await handle.execute_update(
        SessionWorkflow.client_responded, ClientResponse(channel=ResponseChannel.CALL)
    )
    result = await handle.result()
    closed = await handle.query(SessionWorkflow.state)
    assert (closed.status, closed.attempts_made, closed.outcome) == (
        SessionStatus.CLOSED, 2, Outcome.REACHED
    )
    assert (closed.next_action, closed.next_action_at) == (None, None)
    assert result.attempts_made == 2


# -- follow-up planning from the attendance pattern ----------------------------------------


@pytest.mark.usefixtures("worker")
async def test_repeated_no_shows_raise_engagement_and_continuity_concerns(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    the_client = booking_data()["client"]
    # Booked up front, a week apart: the shared test server's clock may leap far ahead
    # between two sessions (a timer another test left behind), and attendance is counted
    # from each session's start, so the three must be placed before any of them runs.
    sessions = [
        await book(time_skipping_env, ahead=timedelta(hours=1, days=7 * week),
                   client=the_client, protocol={"max_attempts": 1})
        for week in range(3)
    ]
    plans = []
    for session in sessions:
        result = await run(client, task_queue, session)
        assert result.plan is not None
        plans.append((session, result.plan))

    first, second, third = (plan for _, plan in plans)
    assert (first.attendance.no_shows, first.attendance.consecutive_no_shows) == (1, 1)
    assert {c.kind for c in first.concerns} == {ConcernKind.SAFETY}

    assert (second.attendance.sessions, second.attendance.no_shows) == (2, 2)
    reasons = {c.kind: c.reason for c in second.concerns}
    assert reasons[ConcernKind.ENGAGEMENT_MOTIVATION] == "2 no-shows in the last 90 days"
    assert reasons[ConcernKind.CONTINUITY_OF_CARE] == "2 consecutive no-shows"
    assert ConcernKind.RELATIONAL not in reasons

    reasons = {c.kind: c.reason for c in third.concerns}
    assert reasons[ConcernKind.ENGAGEMENT_MOTIVATION] == "3 no-shows in the last 90 days"
    assert reasons[ConcernKind.CONTINUITY_OF_CARE] == "3 consecutive no-shows"
    assert ConcernKind.RELATIONAL in reasons

    session, plan = plans[2]
    events = await trail(pool, session.session_id)
    assert read(only(events, "plan_created")) == PlanCreated(
        concerns=",".join(c.kind.value for c in plan.concerns),
        tasks=",".join(t.kind.value for t in plan.tasks),
        no_shows_90_days=3,
        consecutive_no_shows=3,
    )
    tasks = await inbox(pool, session.session_id)
    for task in plan.tasks:
        row = tasks[f"{session.session_id}/task/{task.kind.value}"]
        assert (row["kind"], row["priority"]) == ("task", task.priority.value)
        assert row["title"].startswith(task.description)
    assert {t.kind for t in plan.tasks} >= {
        TaskKind.REVIEW_REMINDERS, TaskKind.SUPERVISOR_REVIEW, TaskKind.REBOOK,
        TaskKind.DISCUSS_AT_NEXT_SESSION,
    }
    assert await stored_plan(pool, session.session_id) is not None


@pytest.mark.usefixtures("worker")
async def test_follow_up_counts_only_no_shows_in_the_window_since_the_last_attendance(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
    phone: SimulatedPhone,
) -> None:
    await phone.script(CLIENT_PHONE, Behaviour.ANSWERS)
    session = await book(time_skipping_env)
    history = [
        ("old-no-show", 120, "unreachable_escalated"),  # outside the 90-day window
        ("earlier-no-show", 30, "reached"),
        ("cancelled", 20, "cancelled"),  # a cancellation is not a session held or missed
        ("attended", 7, "attended"),
    ]
    await pool.executemany(
        "INSERT INTO attendance (session_id, client_ref, therapist_id, start_at, outcome,"
        " closed_at) VALUES ($1, $2, $3, $4, $5, $4)",
        [
            (f"{session.session_id}-{name}", session.client.ref, session.therapist_id,
             session.start - timedelta(days=days), outcome)
            for name, days, outcome in history
        ],
    )

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.REACHED
    assert result.plan is not None
    attendance_seen = result.plan.attendance
    assert (attendance_seen.sessions, attendance_seen.no_shows,
            attendance_seen.consecutive_no_shows) == (3, 2, 1)
    assert [(c.kind, c.reason) for c in result.plan.concerns] == [
        (ConcernKind.ENGAGEMENT_MOTIVATION, "2 no-shows in the last 90 days"),
    ]
    assert [t.kind for t in result.plan.tasks] == [
        TaskKind.REBOOK, TaskKind.REVIEW_REMINDERS, TaskKind.DISCUSS_AT_NEXT_SESSION,
    ]
    tasks = await inbox(pool, session.session_id)
    assert {k for k in tasks if "/task/" in k} == {
        f"{session.session_id}/task/{t.kind.value}" for t in result.plan.tasks
    }


# -- awaiting a clinician: the loop closes on a person (issue 26) ---------------------------


async def awaiting(env: WorkflowEnvironment, handle: WorkflowHandle[SessionWorkflow, SessionResult],
                   session: SessionBooking) -> None:
    """Skip past the one attempt: the session waits for a clinician, visibly."""
    await sleep_until(env, session.start + GRACE + SPACING)
    state = await handle.query(SessionWorkflow.state)
    assert state.status is SessionStatus.AWAITING_CLINICIAN
    assert state.next_action is not None
    assert "escalate_now" in state.next_action
    assert "escalation is blocked" in state.next_action
    assert state.next_action_at is not None
    assert state.outcome is None
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search_attributes.SESSION_STATUS) == "awaiting_clinician"


@pytest.mark.usefixtures("worker")
async def test_a_blocked_escalation_waits_for_escalate_now_which_reaches_the_contact(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = booking(**without_consent(
        (await book(time_skipping_env, protocol={"max_attempts": 1})).model_dump(mode="json")))
    handle = await begin(client, task_queue, session)
    await awaiting(time_skipping_env, handle, session)

    answer = await handle.execute_update(SessionWorkflow.escalate_now, ClinicianDecision(
        clinician_id="t-ana", reason="no answer for hours", legal_basis="vital interests"))

    assert "carried out" in answer
    result = await handle.result()
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    assert types(events)[-7:] == [
        "escalation_blocked", "awaiting_clinician", "clinician_decision", *TOLD,
        "plan_created", "closed",
    ]
    sent = read_as(only(events, "escalation_sent"), EscalationSent)
    assert (sent.basis, sent.legal_basis, sent.decided_by) == (
        "clinician decision", "vital interests", "t-ana")
    assert "clinician_wait_timed_out" not in types(events)
    task = (await inbox(pool, session.session_id))[f"{session.session_id}/escalation-blocked"]
    assert "Awaiting your decision" in task["title"]


@pytest.mark.usefixtures("worker")
async def test_a_blocked_escalation_without_a_contact_closes_on_mark_safe(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    data = booking_data()
    session = await book(time_skipping_env, protocol={"max_attempts": 1},
                         client={**data["client"], "emergency_contact": None})
    handle = await begin(client, task_queue, session)
    await awaiting(time_skipping_env, handle, session)

    answer = await handle.execute_update(SessionWorkflow.mark_safe, ClinicianDecision(
        clinician_id="t-ana", reason="the GP saw the client this morning"))

    assert answer.endswith("marked_safe")
    assert (await handle.result()).outcome is Outcome.MARKED_SAFE
    events = await trail(pool, session.session_id)
    assert types(events)[-4:] == ["awaiting_clinician", "clinician_decision", "plan_created",
                                  "closed"]


@pytest.mark.usefixtures("worker")
async def test_nobody_deciding_closes_blocked_after_the_protocols_hours(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = booking(**without_consent((await book(
        time_skipping_env, protocol={"max_attempts": 1, "clinician_wait_hours": 2},
    )).model_dump(mode="json")))

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED
    events = await trail(pool, session.session_id)
    waited = only(events, "awaiting_clinician")
    timed_out = only(events, "clinician_wait_timed_out")
    assert timedelta(hours=2) <= timed_out.occurred_at - waited.occurred_at < (
        timedelta(hours=2) + LATENCY)
    assert read(timed_out) == ClinicianWaitTimedOut(
        waited_hours=2, outcome=Outcome.UNREACHABLE_ESCALATION_BLOCKED)
    until = read_as(waited, AwaitingClinician).until
    assert timedelta(0) <= timed_out.occurred_at - until < LATENCY


@pytest.mark.usefixtures("worker")
async def test_the_client_responding_while_a_clinician_is_awaited_is_reached(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = booking(**without_consent(
        (await book(time_skipping_env, protocol={"max_attempts": 1})).model_dump(mode="json")))
    handle = await begin(client, task_queue, session)
    await awaiting(time_skipping_env, handle, session)

    await handle.execute_update(SessionWorkflow.client_responded,
                                ClientResponse(channel=ResponseChannel.CALL, note="all fine"))

    assert (await handle.result()).outcome is Outcome.REACHED
    assert "clinician_wait_timed_out" not in types(await trail(pool, session.session_id))


@pytest.mark.usefixtures("worker")
async def test_entry_points_see_a_session_awaiting_a_clinician_and_decide_it(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    """Through the application layer every entry point calls: status, then a decision."""
    session = booking(**without_consent(
        (await book(time_skipping_env, protocol={"max_attempts": 1})).model_dump(mode="json")))
    handle = await begin(client, task_queue, session)
    await awaiting(time_skipping_env, handle, session)
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    async with Application(settings, client=client, pool=pool) as application:
        status = await application.status(session.session_id)
        assert status.state is not None
        assert status.state.status is SessionStatus.AWAITING_CLINICIAN
        assert status.message == f"session {session.session_id} is awaiting_clinician"
        decided = await application.decide(session.session_id, DecisionKind.STAND_DOWN,
                                           ClinicianDecision(clinician_id="t-ana",
                                                             reason="the GP has it in hand"))
    assert decided.kind is ResultKind.APPLIED, decided.message
    assert decided.message.endswith("the session closes as stood_down")
    assert (await handle.result()).outcome is Outcome.STOOD_DOWN
