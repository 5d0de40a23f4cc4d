"""Consent, the contact window, texts and clinician decisions, through the real workflow.

Same servers as `test_session_workflow`: the time-skipping Temporal test server, the real
worker with the simulated phone (which also texts and emails), embedded PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.outreach import TextPolicyActivities
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.domain.contact_window import local_day
from missed_session.domain.events import (
    ClientResponded,
    ClinicianDecisionMade,
    Closed,
    EscalationBlocked,
    EscalationSent,
    MessageSent,
    OptedOut,
    OutreachDeferred,
    OutreachFailed,
    OutreachSkipped,
    read,
)
from missed_session.domain.messages import TEXT_LIMIT, ensure_discreet
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    Channel,
    ConcernKind,
    DecisionKind,
    Outcome,
    Reschedule,
    ResponseChannel,
    SessionStatus,
    TextCheck,
    TextReply,
)
from missed_session.store.audit import AuditStore
from tests.support.factories import booking, read_as
from tests.support.outreach_rules import NEW_YORK, book_with, decision
from tests.support.session_workflow import (
    CLIENT_PHONE,
    CONTACT_PHONE,
    GRACE,
    LATENCY,
    OUTREACH_TRAIL,
    SENDER,
    begin,
    every,
    key,
    only,
    placed,
    run,
    sleep_until,
    trail,
    types,
)
from worker import new_worker
from workflows.session import SessionWorkflow

CLIENT_EMAIL = "robin@example.org"


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER) as running:
        yield running


NO_CONSENT = {"name": "Sam", "phone": CONTACT_PHONE, "consent": False}


# -- the contact window --------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_no_show_at_22_30_client_time_waits_until_08_00(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, hour=22, minute=15, time_zone=NEW_YORK,
                              protocol={"max_attempts": 1})

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    assert types(events)[:5] == [
        "scheduled", *OUTREACH_TRAIL, "outreach_deferred", "outreach_attempted",
    ]
    zone = ZoneInfo(NEW_YORK)
    no_show = only(events, "grace_period_expired").occurred_at.astimezone(zone)
    assert (no_show.hour, no_show.minute) == (22, 30)
    deferred = only(events, "outreach_deferred")
    opens = (no_show + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    assert read(deferred) == OutreachDeferred(
        action="outreach attempt 1", reason="outside the client's contact window", until=opens
    )
    first_call = only(events, "outreach_attempted").occurred_at
    assert opens <= first_call < opens + LATENCY
    assert first_call.astimezone(zone).hour == 8


@pytest.mark.usefixtures("worker")
async def test_escalation_waits_for_the_window_unless_the_protocol_allows_high_risk(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    # A high-risk no-show at 22:30: without the protocol's leave, escalation (after the first
    # attempt) waits for 08:00 with the attempt; with it, escalation goes at once.
    waits = await book_with(time_skipping_env, hour=22, minute=20, time_zone=NEW_YORK,
                            risk_tier="high", protocol={"max_attempts": 1})
    goes = await book_with(time_skipping_env, hour=22, minute=20, time_zone=NEW_YORK,
                           risk_tier="high", protocol={
                               "max_attempts": 1, "high_risk_escalation_outside_window": True,
                           })
    handles = [await begin(client, task_queue, session) for session in (waits, goes)]
    for handle in handles:
        assert (await handle.result()).outcome is Outcome.UNREACHABLE_ESCALATED

    zone = ZoneInfo(NEW_YORK)
    waited = await trail(pool, waits.session_id)
    assert types(waited)[3:8] == [
        "outreach_deferred", "outreach_attempted", "voicemail_left", "emergency_contact_called",
        "escalation_sent",
    ]
    assert only(waited, "escalation_sent").occurred_at.astimezone(zone).hour == 8
    went = await trail(pool, goes.session_id)
    assert types(went)[3:8] == [
        "emergency_contact_called", "escalation_sent", "outreach_deferred",
        "outreach_attempted", "voicemail_left",
    ]
    sent = only(went, "escalation_sent")
    assert (sent.occurred_at.astimezone(zone).hour, sent.occurred_at.astimezone(zone).minute) == (
        22, 30
    )
    assert read_as(sent, EscalationSent).outside_contact_window == (
        "protocol allows for high risk"
    )


# -- consent per channel --------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_no_voicemail_without_voicemail_consent(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, preferences={"voicemail": False},
                              protocol={"max_attempts": 2})

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    assert types(events)[3:7] == [
        "outreach_attempted", "outreach_skipped", "outreach_attempted", "outreach_skipped",
    ]
    assert [read(e) for e in every(events, "outreach_skipped")] == [
        OutreachSkipped(attempt=n, channel=Channel.VOICEMAIL, reason="no consent for voicemail")
        for n in (1, 2)
    ]
    assert "voicemail_left" not in types(events)
    assert "voicemail" not in [kind for _, kind, _, _ in await placed(pool, session.session_id)]


@pytest.mark.usefixtures("worker")
async def test_the_preferred_channel_goes_first_and_unconsented_ones_are_skipped(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(
        time_skipping_env,
        preferences={"call": False, "voicemail": False, "email": True, "preferred": "email"},
        protocol={"max_attempts": 1, "channels": ["call", "voicemail", "text", "email"]},
    )

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    assert [(e.event_type.value, getattr(read(e), "channel", None)) for e in events[3:7]] == [
        ("message_sent", "email"), ("outreach_skipped", "call"),
        ("outreach_skipped", "voicemail"), ("outreach_skipped", "text"),
    ]
    assert await placed(pool, session.session_id) == [
        (key(session, "attempt-1/email"), "email", CLIENT_EMAIL, "sent"),
        (key(session, "escalation"), "message", CONTACT_PHONE, "delivered"),
    ]


@pytest.mark.usefixtures("worker")
async def test_an_invalid_number_moves_the_ladder_to_email(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    await SimulatedPhone(pool).script(CLIENT_PHONE, Behaviour.INVALID_NUMBER)
    session = await book_with(
        time_skipping_env, preferences={"text": True, "email": True},
        protocol={"max_attempts": 2, "channels": ["call", "voicemail", "text", "email"]},
    )

    result = await run(client, task_queue, session)

    assert result.attempts_made == 2
    events = await trail(pool, session.session_id)
    assert read(only(events, "outreach_failed")) == OutreachFailed(
        attempt=1, channel=Channel.CALL, reason="invalid contact"
    )
    # The number reaches nobody: no voicemail or text to it, ever again; email goes on.
    assert [read(e) for e in every(events, "message_sent")] == [
        MessageSent(attempt=1, channel=Channel.EMAIL),
        MessageSent(attempt=2, channel=Channel.EMAIL),
    ]
    assert [kind for _, kind, _, _ in await placed(pool, session.session_id)] == [
        "call", "email", "email", "message",
    ]


@pytest.mark.usefixtures("worker")
async def test_consent_for_safety_concerns_only_blocks_escalation_for_standard_risk(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    contact = {"name": "Sam", "phone": CONTACT_PHONE, "consent": True,
               "consent_date": "2026-01-15", "consent_scope": "safety_concern"}
    session = await book_with(time_skipping_env, contact=contact, protocol={"max_attempts": 1})

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED
    events = await trail(pool, session.session_id)
    assert read_as(only(events, "escalation_blocked"), EscalationBlocked).reason == (
        "consent covers safety concerns only"
    )


# -- texts ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_at_most_one_text_a_day_and_it_is_short_and_discreet(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, preferences={"text": True},
                              protocol={"channels": ["call", "text"]})

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    assert [read(e) for e in every(events, "message_sent")] == [
        MessageSent(attempt=1, channel=Channel.TEXT)
    ]
    assert [read(e) for e in every(events, "outreach_skipped")] == [
        OutreachSkipped(attempt=n, channel=Channel.TEXT, reason="a text was already sent today")
        for n in (2, 3)
    ]
    rows = await SimulatedPhone(pool).placed(session.session_id)
    texts = [row["body"] for row in rows if row["kind"] == "text"]
    assert len(texts) == 1
    assert len(texts[0]) <= TEXT_LIMIT
    assert ensure_discreet(texts[0]) == texts[0]
    assert "Robin" in texts[0]
    assert SENDER.callback_number in texts[0]


@pytest.mark.usefixtures("worker")
async def test_after_stop_no_text_is_sent(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    # Spacing of a day: each attempt would be allowed its one text of the day.
    session = await book_with(
        time_skipping_env, preferences={"text": True},
        protocol={"channels": ["text", "call"], "attempt_spacing_minutes": 240},
    )
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))

    await handle.execute_update(SessionWorkflow.text_reply, TextReply(body=" stop "))
    result = await handle.result()

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    assert read(only(events, "opted_out")) == OptedOut(channel=Channel.TEXT)
    assert [read_as(e, MessageSent).attempt for e in every(events, "message_sent")] == [1]
    assert [read(e) for e in every(events, "outreach_skipped")] == [
        OutreachSkipped(attempt=n, channel=Channel.TEXT, reason="the client opted out of texts")
        for n in (2, 3)
    ]
    assert [kind for _, kind, _, _ in await placed(pool, session.session_id)].count("text") == 1


@pytest.mark.usefixtures("worker")
async def test_a_text_reply_other_than_stop_is_a_response(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))

    await handle.execute_update(SessionWorkflow.text_reply, TextReply(body="I'm ok, sorry"))

    assert (await handle.result()).outcome is Outcome.REACHED
    responded = only(await trail(pool, session.session_id), "client_responded")
    assert read(responded) == ClientResponded(
        channel=ResponseChannel.TEXT, responder="client", note="I'm ok, sorry"
    )


# -- clinician decisions ------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_escalation_without_consent_is_blocked_until_escalate_now_is_recorded(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, contact=NO_CONSENT, risk_tier="high")
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + timedelta(minutes=15))
    assert "escalation_blocked" in types(await trail(pool, session.session_id))

    answer = await handle.execute_update(
        SessionWorkflow.escalate_now,
        decision(reason="imminent risk", legal_basis="vital interests (imminent risk)"),
    )
    result = await handle.result()

    assert "recorded" in answer
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    decided = only(events, "clinician_decision")
    assert read(decided) == ClinicianDecisionMade(
        decision=DecisionKind.ESCALATE_NOW, clinician_id="t-ana", reason="imminent risk",
        legal_basis="vital interests (imminent risk)",
    )
    sent = only(events, "escalation_sent")
    assert sent.sequence > decided.sequence
    assert read(sent) == EscalationSent(
        basis="clinician decision", legal_basis="vital interests (imminent risk)",
        decided_by="t-ana", reason="imminent risk", consent_on_file=False,
    )
    assert (CONTACT_PHONE, "delivered") in [
        (to, res) for _, kind, to, res in await placed(pool, session.session_id)
        if kind == "message"
    ]


@pytest.mark.usefixtures("worker")
async def test_invalid_decisions_are_refused_and_the_workflow_goes_on(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env, contact=NO_CONSENT)
    handle = await begin(client, task_queue, session)

    with pytest.raises(WorkflowUpdateFailedError) as before:
        await handle.execute_update(SessionWorkflow.mark_safe, decision())
    assert "not during outreach (the session is scheduled)" in str(before.value.cause)

    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))
    with pytest.raises(WorkflowUpdateFailedError) as no_basis:
        await handle.execute_update(SessionWorkflow.escalate_now, decision(reason="worried"))
    assert "a legal basis is required" in str(no_basis.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as no_reason:
        await handle.execute_update(SessionWorkflow.stand_down, decision(reason=" "))
    assert "a reason is required" in str(no_reason.value.cause)
    state = await handle.query(SessionWorkflow.state)
    assert state.status is SessionStatus.OUTREACH

    result = await handle.result()

    assert result.outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED
    assert result.attempts_made == 3
    assert "clinician_decision" not in types(await trail(pool, session.session_id))


@pytest.mark.usefixtures("worker")
async def test_mark_safe_ends_outreach_and_notes_are_recorded(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await handle.execute_update(SessionWorkflow.add_note, decision(reason="booked by phone"))
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=5))

    await handle.execute_update(SessionWorkflow.mark_safe, decision(reason="GP saw client"))
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await handle.execute_update(SessionWorkflow.stand_down, decision())
    # Outreach has ended (or the session has moved on to follow-up already).
    assert "stand_down refused" in str(twice.value.cause)
    result = await handle.result()

    assert result.outcome is Outcome.MARKED_SAFE
    assert result.attempts_made == 1
    events = await trail(pool, session.session_id)
    assert [read(e) for e in every(events, "clinician_decision")] == [
        ClinicianDecisionMade(
            decision=DecisionKind.ADD_NOTE, clinician_id="t-ana", reason="booked by phone"
        ),
        ClinicianDecisionMade(
            decision=DecisionKind.MARK_SAFE, clinician_id="t-ana", reason="GP saw client"
        ),
    ]
    assert types(events)[-2:] == ["plan_created", "closed"]
    assert read(only(events, "closed")) == Closed(outcome=Outcome.MARKED_SAFE, attempts=1)
    assert "escalation_sent" not in types(events)


@pytest.mark.usefixtures("worker")
async def test_stand_down_ends_outreach(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    session = await book_with(time_skipping_env)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + GRACE + timedelta(minutes=20))

    await handle.execute_update(SessionWorkflow.stand_down, decision(reason="client moved"))
    result = await handle.result()

    assert result.outcome is Outcome.STOOD_DOWN
    assert result.attempts_made == 2
    events = await trail(pool, session.session_id)
    decided = read_as(only(events, "clinician_decision"), ClinicianDecisionMade)
    assert decided.decision is DecisionKind.STAND_DOWN
    assert "escalation_sent" not in types(events)


# -- logistical concerns in the follow-up plan ---------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_rescheduled_session_in_another_time_zone_raises_logistical_concerns(
    client: Client, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    session = await book_with(time_skipping_env, session_time_zone=NEW_YORK,
                              protocol={"max_attempts": 1})
    handle = await begin(client, task_queue, session)
    await handle.execute_update(SessionWorkflow.reschedule,
                                Reschedule(start=session.start + timedelta(hours=1)))

    result = await handle.result()

    assert result.plan is not None
    reasons = [c.reason for c in result.plan.concerns if c.kind is ConcernKind.LOGISTICAL]
    assert reasons[0].startswith("the client's time zone (America/Los_Angeles, UTC-0")
    assert reasons[1] == "the session was rescheduled once before it was missed"


@pytest.mark.usefixtures("worker")
async def test_an_opt_out_holds_in_the_clients_later_sessions(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment
) -> None:
    first = await book_with(time_skipping_env, preferences={"text": True},
                            protocol={"channels": ["text"], "max_attempts": 2,
                                      "attempt_spacing_minutes": 30})
    handle = await begin(client, task_queue, first)
    await sleep_until(time_skipping_env, first.start + GRACE + timedelta(minutes=5))
    await handle.execute_update(SessionWorkflow.text_reply, TextReply(body="STOP"))
    await handle.result()
    later = booking(**{**first.model_dump(mode="json"), "session_id": f"{first.session_id}-b",
                       "start": (first.start + timedelta(days=2)).isoformat()})

    await run(client, task_queue, later)

    skipped = every(await trail(pool, later.session_id), "outreach_skipped")
    assert [read_as(e, OutreachSkipped).reason for e in skipped] == (
        ["the client opted out of texts"] * 2
    )
    assert "message_sent" not in types(await trail(pool, later.session_id))


async def test_one_text_a_day_across_the_clients_sessions(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    policy = ActivityEnvironment()
    texted_at = datetime(2026, 11, 28, 18, 15, tzinfo=UTC)  # 10:15 in Los Angeles
    for sequence, (event_type, data) in enumerate([
        (AuditEventType.SCHEDULED, {"client_ref": "c-1"}),
        (AuditEventType.MESSAGE_SENT, {"attempt": 1, "channel": "text"}),
    ], start=1):
        await store.record([AuditEvent(session_id="s-1", sequence=sequence, event_type=event_type,
                                      occurred_at=texted_at, data=data)])
    activities = TextPolicyActivities(pool)

    async def refusal(client_ref: str, at: datetime) -> str | None:
        start, end = local_day(at, "America/Los_Angeles")
        check = TextCheck(client_ref=client_ref, day_start=start, day_end=end)
        answer: str | None = await policy.run(activities.text_refusal, check)
        return answer

    assert await refusal("c-1", texted_at + timedelta(hours=5)) == (
        "a text was already sent today"
    )
    assert await refusal("c-1", texted_at + timedelta(hours=15)) is None  # 09:15 next day
    assert await refusal("c-2", texted_at) is None
    await store.record([AuditEvent(session_id="s-1", sequence=3,
                                  event_type=AuditEventType.OPTED_OUT,
                                  occurred_at=texted_at, data={"channel": "text"})])
    assert await refusal("c-1", texted_at + timedelta(days=30)) == (
        "the client opted out of texts"
    )
