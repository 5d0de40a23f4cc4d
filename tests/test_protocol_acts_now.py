"""The protocol acts at once on what it is told, only when allowed, and says so when it cannot.

Issue 11 through the real workflow on the time-skipping server: clinician decisions during a
step in flight, every step's rules checked when it runs (a STOP that lands meanwhile, a
contact window that closes), who answered, attempts counted from their first step, and the
Web UI's details in the client's time zone. Steps in flight are held by stand-in channels
(the simulated phone, with one step held or scripted), not mocks of Temporal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outreach import UNCERTAIN_REASON, TextPolicyActivities
from missed_session.channels.base import ChannelUnavailableError, DeliveryUncertainError
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.domain.events import (
    AnswerUnclear,
    EscalationSent,
    EscalationUncertain,
    OptedOut,
    OutreachFailed,
    OutreachSkipped,
    OutreachUncertain,
    read,
)
from missed_session.domain.models import (
    AuditEvent,
    CallResult,
    Cancellation,
    Channel,
    ClientResponse,
    Outcome,
    ResponseChannel,
    SessionBooking,
    SessionResult,
    SessionStatus,
    TextCheck,
    TextReply,
)
from tests.support.factories import read_as
from tests.support.outreach_rules import NEW_YORK, book_with, decision
from tests.support.session_workflow import (
    CLIENT_PHONE,
    CONTACT_PHONE,
    GRACE,
    SENDER,
    begin,
    every,
    inbox,
    key,
    only,
    placed,
    sleep_until,
    trail,
    types,
)
from worker import new_worker
from workflows.session import SessionWorkflow
from workflows.session_messages import UNCLEAR_ANSWER

SOON = 30.0
"""Real seconds a test waits for something that should take well under one."""
ACTS_WITHIN = timedelta(seconds=5)
"""How soon after a decision its effect must show in the trail."""


class HeldPhone:
    """The simulated phone, except that each call is held in flight until released.

    `fail_first`: the first try of each call fails as a provider outage (retried), so the
    held call is a retrying one. `answer`: what a released call reports.
    """

    def __init__(self, pool: asyncpg.Pool, *, fail_first: bool = False,
                 answer: CallResult | None = None) -> None:
        self._phone = SimulatedPhone(pool)
        self._fail_first = fail_first
        self._answer = answer
        self.tries = 0
        self.ringing = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        self.tries += 1
        if self._fail_first and self.tries == 1:
            msg = "call provider unavailable"
            raise ChannelUnavailableError(msg)
        self.ringing.set()
        try:
            while not self.release.is_set():
                activity.heartbeat()
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        result = await self._phone.call(key, session_id, to)
        return self._answer or result

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        return await self._phone.leave_voicemail(key, session_id, to, text)

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        return await self._phone.deliver_message(key, session_id, to, text)


class AnsweringPhone(HeldPhone):
    """Calls are not held; each reports `answer`."""

    def __init__(self, pool: asyncpg.Pool, answer: CallResult) -> None:
        super().__init__(pool, answer=answer)
        self.release.set()


class FailingPhone(HeldPhone):
    """Every try of a call fails as a provider outage; records when each try was scheduled."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.tried_at: list[datetime] = []

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        self.tried_at.append(activity.info().current_attempt_scheduled_time)
        msg = "call provider unavailable"
        raise ChannelUnavailableError(msg)


class SlowPhone(HeldPhone):
    """Each call rings for `seconds` of real time (the server's clock runs meanwhile)."""

    def __init__(self, pool: asyncpg.Pool, seconds: float) -> None:
        super().__init__(pool)
        self._seconds = seconds

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        for _ in range(int(self._seconds * 10)):
            activity.heartbeat()
            await asyncio.sleep(0.1)
        return await self._phone.call(key, session_id, to)


class StopDuringPolicyCheck(TextPolicyActivities):
    """The text policy answers "a text may go", and the client's STOP lands while it does."""

    def __init__(self, pool: asyncpg.Pool, client: Client) -> None:
        super().__init__(pool)
        self._client = client
        self.checked = 0

    @activity.defn(name="text_refusal")
    async def text_refusal(self, check: TextCheck) -> str | None:
        """Read the policy, then let the STOP land before answering."""
        answer = await super().text_refusal(check)
        self.checked += 1
        session_workflow = activity.info().workflow_id
        assert session_workflow is not None
        handle = self._client.get_workflow_handle(session_workflow)
        await handle.execute_update("text_reply", TextReply(body="STOP"))
        return answer


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER) as running:
        yield running


def gap(events: list[AuditEvent], first: str, then: str) -> timedelta:
    return only(events, then).occurred_at - only(events, first).occurred_at


async def outcome(handle: WorkflowHandle[Any, SessionResult]) -> SessionResult:
    return await asyncio.wait_for(handle.result(), SOON)


# -- 1. decisions act now ------------------------------------------------------------------


async def test_escalate_now_during_a_retrying_call_reaches_the_contact_within_seconds(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = HeldPhone(pool, fail_first=True)
    session = await book_with(time_skipping_env, protocol={"max_attempts": 1})
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        handle = await begin(client, task_queue, session)
        result = asyncio.create_task(handle.result())  # lets the server skip to the no-show
        await asyncio.wait_for(phone.ringing.wait(), SOON)  # the call's second try, in flight

        answer = await asyncio.wait_for(handle.execute_update(
            SessionWorkflow.escalate_now, decision(legal_basis="vital interests")
        ), SOON)

        assert answer == "recorded: carried out: the emergency contact was told"
        assert not phone.cancelled.is_set()  # the client's call goes on beside it
        events = await trail(pool, session.session_id)
        assert "outreach_attempted" not in types(events)
        assert gap(events, "clinician_decision", "escalation_sent") < ACTS_WITHIN
        assert read_as(only(events, "escalation_sent"), EscalationSent).basis == (
            "clinician decision"
        )
        assert [(kind, to) for _, kind, to, _ in await placed(pool, session.session_id)] == [
            ("message", CONTACT_PHONE),
        ]
        phone.release.set()
        closed = await asyncio.wait_for(result, SOON)

    assert closed.outcome is Outcome.UNREACHABLE_ESCALATED
    assert phone.tries == 2
    assert len(every(await trail(pool, session.session_id), "escalation_sent")) == 1


async def test_stand_down_during_a_step_stops_the_ladder_before_the_next_effect(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = HeldPhone(pool)
    session = await book_with(time_skipping_env)
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        handle = await begin(client, task_queue, session)
        result = asyncio.create_task(handle.result())
        await asyncio.wait_for(phone.ringing.wait(), SOON)

        answer = await asyncio.wait_for(
            handle.execute_update(SessionWorkflow.stand_down, decision()), SOON
        )

        assert answer == "recorded: outreach stopped, the session closes as stood_down"
        closed = await asyncio.wait_for(result, SOON)
        await asyncio.wait_for(phone.cancelled.wait(), SOON)  # at its next heartbeat

    assert closed.outcome is Outcome.STOOD_DOWN
    assert closed.attempts_made == 1
    events = await trail(pool, session.session_id)
    assert read(only(events, "outreach_uncertain")) == OutreachUncertain(
        attempt=1, channel=Channel.CALL, reason="stopped in flight: stand_down"
    )
    assert gap(events, "clinician_decision", "outreach_uncertain") < ACTS_WITHIN
    assert not {"outreach_attempted", "voicemail_left", "escalation_sent"} & set(types(events))
    assert await placed(pool, session.session_id) == []  # the held call never got through


async def test_mark_safe_during_the_emergency_contact_call_stops_it(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = HeldPhone(pool)
    session = await book_with(time_skipping_env, risk_tier="high")  # escalates after attempt 1
    release_the_client_call = phone.release
    release_the_client_call.set()
    held = asyncio.Event()
    let_go = asyncio.Event()

    async def deliver_message(key: str, session_id: str, to: str, text: str) -> CallResult:
        held.set()
        while not let_go.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.1)
        return CallResult.ANSWERED

    phone.deliver_message = deliver_message  # type: ignore[method-assign]
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        handle = await begin(client, task_queue, session)
        result = asyncio.create_task(handle.result())
        await asyncio.wait_for(held.wait(), SOON)

        await asyncio.wait_for(
            handle.execute_update(SessionWorkflow.mark_safe, decision()), SOON
        )
        closed = await asyncio.wait_for(result, SOON)

    assert closed.outcome is Outcome.MARKED_SAFE
    events = await trail(pool, session.session_id)
    uncertain = only(events, "escalation_uncertain")
    assert uncertain.data["reason"] == "stopped in flight: mark_safe"
    assert "escalation_sent" not in types(events)
    assert "escalation_blocked" not in types(events)


async def test_an_escalate_now_that_cannot_be_carried_out_says_why_and_leaves_a_task(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = HeldPhone(pool)
    session = await book_with(time_skipping_env, contact=None)
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        handle = await begin(client, task_queue, session)
        result = asyncio.create_task(handle.result())
        await asyncio.wait_for(phone.ringing.wait(), SOON)

        answer = await asyncio.wait_for(handle.execute_update(
            SessionWorkflow.escalate_now, decision(legal_basis="vital interests")
        ), SOON)

        assert answer == (
            "recorded: not carried out: no emergency contact on file;"
            " the therapist has an urgent task"
        )
        phone.release.set()
        await asyncio.wait_for(result, SOON)

    tasks = await inbox(pool, session.session_id)
    assert tasks[f"{session.session_id}/escalation-blocked"]["priority"] == "urgent"


class UncertainContactPhone(HeldPhone):
    """The first message to the emergency contact may or may not have reached them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.release.set()
        self.message_keys: list[str] = []

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        self.message_keys.append(key)
        if len(self.message_keys) == 1:
            msg = "the provider timed out after taking the request"
            raise DeliveryUncertainError(msg)
        return await super().deliver_message(key, session_id, to, text)


async def test_an_uncertain_message_to_the_contact_is_not_blocked_and_escalate_now_retries(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = UncertainContactPhone(pool)
    session = await book_with(time_skipping_env, risk_tier="high")  # escalates after attempt 1
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        handle = await begin(client, task_queue, session)
        await sleep_until(time_skipping_env, session.start + timedelta(minutes=20))
        events = await trail(pool, session.session_id)
        assert read(only(events, "escalation_uncertain")) == EscalationUncertain(
            basis="consent on file", reason=UNCERTAIN_REASON,
            task=f"{session.session_id}/escalation-uncertain-1",
        )
        assert "escalation_blocked" not in types(events)

        answer = await handle.execute_update(
            SessionWorkflow.escalate_now, decision(legal_basis="vital interests")
        )
        assert answer == "recorded: carried out: the emergency contact was told"
        await handle.execute_update(SessionWorkflow.mark_safe, decision())
        closed = await outcome(handle)

    assert closed.outcome is Outcome.MARKED_SAFE
    assert phone.message_keys == [key(session, "escalation"), key(session, "escalation-2")]
    events = await trail(pool, session.session_id)
    sent = read_as(only(events, "escalation_sent"), EscalationSent)
    assert (sent.basis, sent.consent_on_file) == ("clinician decision", True)
    task = (await inbox(pool, session.session_id))[f"{session.session_id}/escalation-uncertain-1"]
    assert task["priority"] == "urgent"


@pytest.mark.usefixtures("worker")
async def test_an_emergency_contact_whose_phone_rings_out_is_not_escalation_sent(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    await SimulatedPhone(pool).script(CONTACT_PHONE, Behaviour.RINGS_OUT)
    session = await book_with(time_skipping_env, protocol={"max_attempts": 1})

    closed = await outcome(await begin(client, task_queue, session))

    assert closed.outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED
    events = await trail(pool, session.session_id)
    assert "escalation_sent" not in types(events)
    assert only(events, "escalation_blocked").data["reason"] == (
        "emergency contact unreachable (the call was not answered)"
    )


async def test_an_uncertain_call_is_followed_by_the_voicemail(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    class UncertainCalls(HeldPhone):
        async def call(self, key: str, session_id: str, to: str) -> CallResult:
            msg = "the provider timed out after taking the request"
            raise DeliveryUncertainError(msg)

    phone = UncertainCalls(pool)
    session = await book_with(time_skipping_env, protocol={"max_attempts": 1})
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        await outcome(await begin(client, task_queue, session))

    events = await trail(pool, session.session_id)
    assert read(only(events, "outreach_uncertain")) == OutreachUncertain(
        attempt=1, channel=Channel.CALL, reason=UNCERTAIN_REASON
    )
    assert types(events).index("voicemail_left") > types(events).index("outreach_uncertain")


# -- 2. every step checks its rules when it runs -------------------------------------------


async def test_a_stop_landing_between_the_policy_check_and_the_send_prevents_the_text(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    policy = StopDuringPolicyCheck(pool, client)
    session = await book_with(
        time_skipping_env, preferences={"call": False, "voicemail": False, "text": True},
        protocol={"channels": ["text"], "max_attempts": 2},
    )
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER,
                          text_policy=policy):
        closed = await outcome(await begin(client, task_queue, session))

    assert policy.checked == 1
    assert [kind for _, kind, _, _ in await placed(pool, session.session_id)
            if kind == "text"] == []
    events = await trail(pool, session.session_id)
    assert read(only(events, "opted_out")) == OptedOut(channel=Channel.TEXT)
    assert read(only(events, "outreach_skipped")) == OutreachSkipped(
        attempt=1, channel=Channel.TEXT, reason="the client opted out of texts"
    )
    assert "message_sent" not in types(events)
    assert closed.outcome is Outcome.UNREACHABLE_ESCALATED
    assert closed.attempts_made == 0  # no step of it ever ran


async def _evening_session(env: WorkflowEnvironment, grace_ends: int) -> SessionBooking:
    """A session whose grace period ends `grace_ends` seconds before 21:00 client time."""
    booked = await book_with(env, time_zone=NEW_YORK, hour=20, minute=44,
                             protocol={"max_attempts": 1})
    return booked.model_copy(update={"start": booked.start + timedelta(seconds=60 - grace_ends)})


def nine_pm(session: SessionBooking) -> datetime:
    closes = session.start.replace(second=0) + timedelta(minutes=16)
    assert closes.astimezone(ZoneInfo(NEW_YORK)).hour == 21
    return closes


async def test_an_attempt_started_at_20_59_sends_nothing_after_21_00(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = SlowPhone(pool, seconds=2.5)  # the call rings past 21:00
    session = await _evening_session(time_skipping_env, grace_ends=2)
    closes = nine_pm(session)

    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        closed = await outcome(await begin(client, task_queue, session))

    events = await trail(pool, session.session_id)
    # Still ringing at 21:00: given up then, and recorded as what it is.
    assert read(only(events, "outreach_uncertain")) == OutreachUncertain(
        attempt=1, channel=Channel.CALL,
        reason="the client's contact window closed while the step was tried",
    )
    assert closes <= only(events, "outreach_uncertain").occurred_at < closes + ACTS_WITHIN
    skipped = only(events, "outreach_skipped")
    assert read(skipped) == OutreachSkipped(
        attempt=1, channel=Channel.VOICEMAIL, reason="outside the client's contact window"
    )
    assert "voicemail" not in [kind for _, kind, to, _ in await placed(pool, session.session_id)
                               if to == CLIENT_PHONE]
    assert closed.outcome is Outcome.UNREACHABLE_ESCALATED  # the contact, when it opens
    sent = only(events, "escalation_sent").occurred_at.astimezone(ZoneInfo(NEW_YORK))
    assert (sent.hour, sent.minute) == (8, 0)


async def test_a_step_retried_up_to_21_00_is_not_retried_after_it(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = FailingPhone(pool)
    session = await _evening_session(time_skipping_env, grace_ends=10)
    closes = nine_pm(session)

    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        await outcome(await begin(client, task_queue, session))

    assert len(phone.tried_at) >= 2
    assert all(tried < closes for tried in phone.tried_at), phone.tried_at
    events = await trail(pool, session.session_id)
    failed = read_as(only(events, "outreach_failed"), OutreachFailed)
    assert (failed.channel, failed.reason) == (
        Channel.CALL, "the client's contact window closed while the step was retried"
    )
    assert [row for row in await placed(pool, session.session_id)
            if row[2] == CLIENT_PHONE] == []


# -- 3. opt-out keywords -------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_stop_please_opts_out_and_is_not_a_response(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, protocol={"max_attempts": 2})
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))

    answer = await handle.execute_update(SessionWorkflow.text_reply, TextReply(body="STOP please"))

    assert answer == "recorded: the client opted out of texts"
    closed = await outcome(handle)
    assert closed.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    assert read(only(events, "opted_out")) == OptedOut(channel=Channel.TEXT)
    assert "client_responded" not in types(events)


# -- 4. who answered -----------------------------------------------------------------------


async def _unclear_answer_leaves_outreach_open(
    client: Client, pool: asyncpg.Pool, task_queue: str, env: WorkflowEnvironment,
    send: Any, expected: AnswerUnclear,
) -> None:
    session = await book_with(env, risk_tier="high", protocol={"max_attempts": 2})
    handle = await begin(client, task_queue, session)
    await sleep_until(env, session.start + timedelta(minutes=15))  # high risk: 10 min grace

    assert await send(handle) == UNCLEAR_ANSWER

    closed = await outcome(handle)
    assert closed.outcome is Outcome.UNREACHABLE_ESCALATED  # outreach went on to its end
    assert closed.attempts_made == 2
    events = await trail(pool, session.session_id)
    assert "client_responded" not in types(events)
    task = f"{session.session_id}/answer-unclear-1"
    assert read(only(events, "answer_unclear")) == expected.model_copy(update={"task": task})
    row = (await inbox(pool, session.session_id))[task]
    assert (row["kind"], row["priority"]) == ("task", "urgent")


@pytest.mark.usefixtures("worker")
async def test_a_wrong_number_reply_on_a_high_risk_session_leaves_outreach_open_with_a_task(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    async def send(handle: WorkflowHandle[Any, Any]) -> str:
        return await handle.execute_update(
            SessionWorkflow.text_reply, TextReply(body="Wrong number, sorry")
        )

    await _unclear_answer_leaves_outreach_open(
        client, pool, task_queue, time_skipping_env, send, AnswerUnclear(
            channel=ResponseChannel.TEXT, responder="the client's number",
            why="the reply says it is not from the client", note="Wrong number, sorry",
            task="",
        ),
    )


@pytest.mark.usefixtures("worker")
async def test_someone_else_responding_for_a_high_risk_client_leaves_outreach_open(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    async def send(handle: WorkflowHandle[Any, Any]) -> str:
        return await handle.execute_update(SessionWorkflow.client_responded, ClientResponse(
            channel=ResponseChannel.CALL, responder="roommate", note="has not seen them"
        ))

    await _unclear_answer_leaves_outreach_open(
        client, pool, task_queue, time_skipping_env, send, AnswerUnclear(
            channel=ResponseChannel.CALL, responder="roommate",
            why="a high-risk client's response must come from the client",
            note="has not seen them", task="",
        ),
    )


async def test_a_call_answered_by_who_knows_does_not_end_a_high_risk_session(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = AnsweringPhone(pool, CallResult.ANSWERED_UNKNOWN)
    session = await book_with(time_skipping_env, risk_tier="high", protocol={"max_attempts": 1})
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        closed = await outcome(await begin(client, task_queue, session))

    assert closed.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    assert only(events, "outreach_attempted").data["result"] == "answered_unknown"  # as it was
    unclear = read_as(only(events, "answer_unclear"), AnswerUnclear)
    assert (unclear.channel, unclear.responder, unclear.attempt) == (
        ResponseChannel.CALL, "unknown", 1
    )
    assert read(only(events, "outreach_skipped")) == OutreachSkipped(
        attempt=1, channel=Channel.VOICEMAIL,
        reason="the call was answered, not clearly by the client",
    )
    assert "client_responded" not in types(events)


async def test_a_call_answered_by_who_knows_reaches_a_standard_risk_client(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = AnsweringPhone(pool, CallResult.ANSWERED_UNKNOWN)
    session = await book_with(time_skipping_env)
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        closed = await outcome(await begin(client, task_queue, session))

    assert closed.outcome is Outcome.REACHED
    assert "answer_unclear" not in types(await trail(pool, session.session_id))


# -- 8. attempts count what happened -------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_client_who_calls_back_overnight_closes_with_no_attempt_made(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, hour=22, minute=15, time_zone=NEW_YORK)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + timedelta(hours=2))  # 00:15 there
    state = await handle.query(SessionWorkflow.state)
    assert (state.attempts_made, state.next_action) == (
        0, "outreach attempt 1 (contact window opens)"
    )

    await handle.execute_update(
        SessionWorkflow.client_responded, ClientResponse(channel=ResponseChannel.CALL)
    )
    closed = await outcome(handle)

    assert (closed.outcome, closed.attempts_made) == (Outcome.REACHED, 0)
    events = await trail(pool, session.session_id)
    assert only(events, "closed").data["attempts"] == 0
    assert await placed(pool, session.session_id) == []


# -- 9. the Web UI's details ---------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_the_details_show_times_in_the_clients_time_zone_with_the_zone_named(
    client: Client, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, time_zone=NEW_YORK)
    handle = await begin(client, task_queue, session)

    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)

    local = session.start.astimezone(ZoneInfo(NEW_YORK))
    assert f"next: wait for the start at {local:%Y-%m-%d %H:%M} {local.tzname()}" in (
        metadata.current_details
    )
    assert f"({NEW_YORK}) (client's time)" in metadata.current_details
    assert "UTC" not in metadata.current_details
    await handle.execute_update(SessionWorkflow.cancel, Cancellation())
    await outcome(handle)


async def test_an_uncertain_escalation_awaits_a_clinician_whose_escalate_now_closes_it(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    phone = UncertainContactPhone(pool)
    session = await book_with(time_skipping_env, risk_tier="high", protocol={"max_attempts": 1})
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        handle = await begin(client, task_queue, session)
        await sleep_until(time_skipping_env, session.start + timedelta(minutes=30))
        state = await handle.query(SessionWorkflow.state)
        assert state.status is SessionStatus.AWAITING_CLINICIAN
        assert "may not have been reached" in (state.next_action or "")

        answer = await handle.execute_update(
            SessionWorkflow.escalate_now, decision(legal_basis="vital interests")
        )
        assert answer == "recorded: carried out: the emergency contact was told"
        closed = await outcome(handle)

    assert closed.outcome is Outcome.UNREACHABLE_ESCALATED
    assert types(await trail(pool, session.session_id))[-7:] == [
        "escalation_uncertain", "awaiting_clinician", "clinician_decision",
        "emergency_contact_called", "escalation_sent", "plan_created", "closed",
    ]
