"""One scheduled session, carried through the missed-session protocol.

Read `run` top to bottom as the therapist's protocol: wait for the start, wait out the
grace period for a check-in, alert the therapist, reach out (the protocol's channels in
order, each only with the client's consent and only inside the client's local contact
window) a set number of times, escalate to the emergency contact only with consent or a
clinician's recorded decision, plan the follow-up from the attendance pattern, and close
with one outcome. Signals may arrive at any point; their handlers only note them, and the
protocol acts on them (and audits them) in order. Clinician decisions are updates: a
validator refuses what cannot apply now, and an accepted decision is in the audit trail
before the caller hears back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import Priority as TaskPriority
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutType,
)
from temporalio.exceptions import TimeoutError as StepTimeoutError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities, ClosingRecord, NoShowRecord
    from activities.follow_up import FollowUpActivities
    from activities.notices import (
        NoticeActivities,
        NoticePlanRequest,
        NoticeRequest,
        notice_workflow_id,
    )
    from activities.outreach import (
        CHANNEL_FAILED,
        CHANNEL_REJECTED,
        DELIVERY_UNCERTAIN,
        INVALID_CONTACT,
        NO_CONSENT,
        UNCERTAIN_REASON,
        OutreachActivities,
        TextPolicyActivities,
    )
    from activities.therapist import TherapistActivities
    from missed_session import search_attributes as attrs
    from missed_session.domain import (
        acceptance,
        contact_window,
        decisions,
        events,
        messages,
        protocol,
    )
    from missed_session.domain.clients import StepOutcome
    from missed_session.domain.models import (
        AuditEvent,
        CallResult,
        Cancellation,
        Channel,
        CheckIn,
        ClientResponse,
        ClinicianDecision,
        DecisionKind,
        EmergencyContact,
        EscalationRequest,
        FollowUpPlan,
        FollowUpRequest,
        InboxItemKind,
        Outcome,
        OutreachRequest,
        Priority,
        Reschedule,
        ResponseChannel,
        RiskTier,
        SessionBooking,
        SessionResult,
        SessionState,
        SessionStatus,
        TextCheck,
        TextReply,
        TherapistNotice,
    )


class _Sent:
    """A one-way step (voicemail, text, email) went out."""


class _Uncertain:
    """A step may or may not have reached the client (not confirmed, or stopped in flight)."""


SENT = _Sent()
UNCERTAIN = _Uncertain()
StepResult = CallResult | _Sent | _Uncertain
EscalationBasis = Literal["consent on file", "clinician decision"]


class Escalation(StrEnum):
    """Where escalation to the emergency contact stands (also the EscalationLevel attribute)."""

    SENT = "sent"
    BLOCKED = "blocked"
    UNCERTAIN = "uncertain"


class _Stopped(Exception):  # noqa: N818 - a signal to the protocol, not an error
    """A step was cancelled in flight: outreach stopped (contact, or a decision)."""

TRAIL_REFUSED = ("AuditConflict", "UnreadableEvent", "UnwritableEvent")
"""Audit write failures that no retry can mend (see `activities.audit`)."""

RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=list(TRAIL_REFUSED),
)
"""Records (audit, inbox, plan) are retried until PostgreSQL takes them, however long an
outage lasts: none may be lost."""

OUTREACH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[INVALID_CONTACT, CHANNEL_REJECTED, CHANNEL_FAILED,
                               DELIVERY_UNCERTAIN],
)
"""Contract A: the provider's own answers end a step (an invalid contact, a refusal, K
failures counted by the activity itself: `ChannelFailed`; a possible delivery:
`DeliveryUncertain`); anything else (PostgreSQL or the ledger down, a dead worker) is our
outage, not the client's, and is retried for as long as it lasts, at most 30 s apart. The
contact window bounds a client step's retries (see `_step`)."""

OUTREACH_PRIORITY = TaskPriority(priority_key=1)
"""Reaching a person goes ahead of bookkeeping when the task queue is backed up (a burst of
sessions whose grace periods expire together): records keep the default priority, 3."""

RECORD_TIMEOUT = timedelta(seconds=30)
NOTICE_WORKFLOWS = "notice-workflows"
"""Patch id: sessions recorded before notices were workflows replay without them."""
OUTREACH_TIMEOUT = timedelta(minutes=2)
OUTREACH_HEARTBEAT = timedelta(seconds=10)
"""Steps heartbeat while they wait on a provider: a dead worker's step is retried within
seconds, and a cancelled step hears of it at its next heartbeat."""


@workflow.defn
class SessionWorkflow:
    """A scheduled session, from booking to outcome."""

    @workflow.init
    def __init__(self, booking: SessionBooking) -> None:
        self._booking = booking
        self._start = booking.start
        self._status = SessionStatus.SCHEDULED
        self._sequence = 0
        self._trail = asyncio.Lock()
        """Held while an event is numbered and written, so the trail is written in order."""
        self._no_show_documented: asyncio.Task[None] | None = None
        """The no-show's records and therapist alert, running alongside the first attempt."""
        self._attempts = 0
        self._next_action: str | None = "wait for the start"
        self._next_action_at: datetime | None = booking.start
        self._outcome: Outcome | None = None
        self._check_in: CheckIn | None = None
        self._cancellation: Cancellation | None = None
        self._reschedule: Reschedule | None = None
        self._response: ClientResponse | None = None
        self._reschedules = 0
        self._escalation: Escalation | None = None
        """None until escalation is considered; then where it stands."""
        self._escalating = asyncio.Lock()
        """Held while the emergency contact is being reached: one escalation at a time."""
        self._escalation_calls = 0
        """Calls to the emergency contact so far; each has its own idempotency key."""
        self._blocked = 0
        """Escalations blocked so far; each has its own task."""
        self._escalate_now_pending = False
        """A clinician's escalate_now is being carried out."""
        self._stopping: list[Awaitable[Any]] = []
        """Steps cancelled in flight; the session closes once they have stopped."""
        self._unclear_answers = 0
        """Answers not clearly the client's so far; each has its own task."""
        self._outreach_outcome: Outcome | None = None
        """How outreach ended, once it has: what decisions and responses are told."""
        self._ending: DecisionKind | None = None
        """mark_safe or stand_down: outreach ends with that decision."""
        self._unusable: set[Channel] = set()
        """Channels whose address proved invalid (a bounced email, a dead number)."""
        self._opted_out_of_text = False
        self._texted_on: set[date] = set()
        """The client's local days on which an automated text was sent."""
        # Shown from the first moment: the first task may wait on its first audit write.
        workflow.set_current_details(self._details())

    # -- the protocol ------------------------------------------------------------------

    @workflow.run
    async def run(self, booking: SessionBooking) -> SessionResult:
        """Carry the session from booking to one outcome."""
        if workflow.info().typed_search_attributes.get(attrs.CLIENT_REF) is None:
            # Started without them (the scheduling path sets them at start, saving a step).
            workflow.upsert_search_attributes([
                pair.key.value_set(pair.value)
                for pair in attrs.initial(booking).search_attributes
            ])
        await self._record(events.Scheduled(
            client_ref=booking.client.ref,
            therapist_id=booking.therapist_id,
            start=booking.start,
            duration_minutes=booking.duration_minutes,
            modality=booking.modality,
            risk_tier=booking.risk_tier,
            grace_period_minutes=protocol.grace_period_minutes(booking),
            protocol=booking.protocol.name,
            protocol_version=booking.protocol.version,
        ))
        plan: FollowUpPlan | None = None
        outcome = await self._wait_for_check_in()
        if outcome is None:
            # The first call goes out now; the no-show is documented alongside it.
            self._plan_next(SessionStatus.NO_SHOW, "alert the therapist", workflow.now())
            self._no_show_documented = asyncio.create_task(self._document_no_show())
            outcome = self._outreach_outcome = await self._reach_out()
            async with self._escalating:  # a clinician's escalation in flight ends first
                pass
            plan = await self._plan_follow_up(outcome, escalated=self._escalated())
        await self._close(outcome)
        return SessionResult(
            session_id=booking.session_id,
            outcome=outcome,
            attempts_made=self._attempts,
            plan=plan,
        )

    async def _wait_for_check_in(self) -> Outcome | None:
        """Sleep until the start, then wait out the grace period.

        Returns the outcome when the session ends here (checked in, cancelled), or None
        when the grace period expired without a check-in. A reschedule starts over.
        """
        while True:
            grace_ends = self._start + protocol.grace_period(self._booking)
            before_start = workflow.now() < self._start
            if before_start:
                self._plan_next(SessionStatus.SCHEDULED, "wait for the start", self._start)
            else:
                self._plan_next(SessionStatus.WAITING, "wait for a check-in", grace_ends)
            deadline = self._start if before_start else grace_ends
            # News accepted as the deadline passed still counts: it was accepted before it.
            await self._wait(self._has_scheduling_news, deadline)
            if self._check_in is not None:
                await self._record(events.CheckedIn(late=False))
                return Outcome.ATTENDED
            if self._cancellation is not None:
                await self._record(events.Cancelled(reason=self._cancellation.reason))
                return Outcome.CANCELLED
            if self._reschedule is not None:
                moved, self._reschedule = self._reschedule, None
                await self._record(events.Rescheduled(
                    previous_start=self._start, start=moved.start, reason=moved.reason
                ))
                self._start = moved.start
                self._reschedules += 1
                workflow.upsert_search_attributes([attrs.SESSION_START.value_set(moved.start)])
            elif not before_start:
                return None

    async def _document_no_show(self) -> None:
        """The grace period is over: document the no-show and tell the therapist.

        Runs alongside the first outreach attempt, so that a burst of sessions whose grace
        periods expire together does not queue every first call behind these writes. It
        holds the trail while it runs: its two events come first in the trail, before any
        outcome of that attempt, as they happened first. One ordinary activity, not local
        ones: a workflow task waits for its local activities, which would hold back the
        first call's command, and one activity instead of three keeps the workflow tasks
        that follow a burst (and compete with it) few.
        """
        notice = self._notice(
            "no-show-alert",
            InboxItemKind.ALERT,
            Priority.URGENT if self._booking.risk_tier is RiskTier.HIGH else Priority.ROUTINE,
            "No-show: outreach to the client has started",
        )
        async with self._trail:
            expired = self._next_event(events.GracePeriodExpired(
                grace_period_minutes=protocol.grace_period_minutes(self._booking)
            ))
            alerted = self._next_event(events.TherapistAlerted(notice=notice.key))
            await self._written(expired, workflow.execute_activity_method(
                AuditActivities.record_no_show,
                NoShowRecord(expired=expired, notice=notice, alerted=alerted),
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
            ))
        await self._notify_therapist(notice, in_inbox=True)

    async def _reach_out(self) -> Outcome:
        """Run the outreach ladder until contact, a clinician's decision, or its end."""
        booking = self._booking
        escalate_after = protocol.escalation_after_attempt(booking)
        for attempt in range(1, booking.protocol.max_attempts + 1):
            if self._outreach_stops():
                break
            if not await self._wait_for_contact_window(f"outreach attempt {attempt}"):
                break
            self._plan_next(SessionStatus.OUTREACH, f"outreach attempt {attempt}", workflow.now())
            if await self._attempt(attempt):
                await self._record(events.ClientResponded(
                    channel=ResponseChannel.CALL, responder="client", attempt=attempt
                ))
                return Outcome.REACHED
            if self._outreach_stops():
                break
            reachable = self._reachable()
            if self._escalation is None and (attempt >= escalate_after or not reachable):
                await self._escalate()
            if self._outreach_stops() or not reachable or attempt == booking.protocol.max_attempts:
                break
            next_at = workflow.now() + protocol.attempt_spacing(booking)
            self._plan_next(SessionStatus.OUTREACH, f"outreach attempt {attempt + 1}", next_at)
            if not await self._wait_during_outreach(next_at):
                break
        if not self._outreach_stops() and self._escalation is None:
            await self._escalate()
        async with self._escalating:  # a clinician's escalation in flight ends first
            pass
        if self._outreach_stops():  # contact, or a decision, came in
            return await self._acknowledge_contact()
        return protocol.unreachable_outcome(escalated=self._escalated())

    async def _attempt(self, attempt: int) -> bool:
        """One outreach attempt: each of the protocol's channels in turn, with consent.

        Returns whether the call reached the client. Each step's rules are checked at the
        moment it runs (consent, opt-out, the daily text limit, the contact window): a step
        that may not run is skipped and the reason recorded; a channel whose address proved
        invalid is not tried again; a failed or uncertain step is recorded as such, and the
        attempt moves on to the next channel.
        """
        voicemail_skip: str | None = None
        """Why the voicemail must not follow the call (it failed; someone picked up)."""
        for channel in protocol.outreach_channels(self._booking):
            if self._outreach_stops():
                return False
            if channel in self._unusable:
                continue
            reason = await self._step_refusal(channel)
            if reason is None and channel is Channel.VOICEMAIL:
                reason = voicemail_skip
            if self._outreach_stops():
                return False
            if reason is not None:
                await self._record(
                    events.OutreachSkipped(attempt=attempt, channel=channel, reason=reason)
                )
                continue
            # Nothing is awaited between the checks above and the step's start.
            result = await self._step(attempt, channel)
            if channel is Channel.CALL:
                if result in {CallResult.ANSWERED, CallResult.ANSWERED_UNKNOWN}:
                    assert isinstance(result, CallResult)
                    unclear = protocol.call_not_the_client(self._booking, result)
                    if unclear is None:
                        return True
                    await self._note_unclear_answer(
                        ResponseChannel.CALL, "unknown", unclear, attempt=attempt
                    )
                    voicemail_skip = "the call was answered, not clearly by the client"
                elif result is None:
                    voicemail_skip = "the call did not go through: no line to leave it on"
            elif channel is Channel.TEXT and result is not None:
                self._texted_on.add(self._client_today())  # sent, or it may have been
        return False

    async def _step_refusal(self, channel: Channel) -> str | None:
        """Why `channel` may not be used at this moment, or None if it may.

        The client-wide text rules are read first (an activity); the in-session rules and the
        contact window are checked after it, so that a STOP that landed meanwhile, or a
        window that closed, wins.
        """
        reason = self._skip_reason(channel)
        if reason is None and channel is Channel.TEXT:
            reason = await self._text_refusal() or self._skip_reason(channel)
        if reason is None and not self._window_open():
            reason = "outside the client's contact window"
        return reason

    async def _step(self, attempt: int, channel: Channel) -> StepResult | None:  # noqa: PLR0911
        """Run one channel's activity and record what happened; None if it did not go out.

        The attempt counts from its first step. The step is cancelled in flight when
        outreach stops, and given up when the client's contact window closes, so that
        nothing reaches the client after it; either way it may have happened, and it is
        recorded so. The activity reads the client's consent as of the step (the client
        directory) and reports the record it relied on; each event below names it, and a
        step the directory refuses is recorded as skipped, naming the refusing record.
        """
        self._attempts = max(self._attempts, attempt)
        request = self._outreach_request(f"attempt-{attempt}/{channel.value}")
        booking = self._booking
        closes = contact_window.closes_at(
            workflow.now(), booking.client.time_zone, booking.protocol.contact_window
        )
        try:
            result, consent = _reported(await self._run_step(
                STEPS[channel], request, stop=self._outreach_stops, closes=closes,
                result_type=_REPORTED,
            ))
        except _Stopped:
            await self._record(events.OutreachUncertain(
                attempt=attempt, channel=channel,
                reason=f"stopped in flight: {self._stop_reason()}",
            ))
            return UNCERTAIN
        except ActivityError as error:
            refusal = _no_consent(error)
            if refusal is not None:
                await self._record(events.OutreachSkipped(
                    attempt=attempt, channel=channel, reason=refusal[1],
                    consent_record=refusal[0],
                ))
                return None
            if _is_invalid_contact(error):
                self._unusable |= protocol.SAME_ADDRESS[channel]
            uncertain = _uncertainty(error)
            if uncertain is not None:
                await self._record(events.OutreachUncertain(
                    attempt=attempt, channel=channel, reason=uncertain
                ))
                return UNCERTAIN
            await self._record(events.OutreachFailed(
                attempt=attempt, channel=channel, reason=_failure_reason(error)
            ))
            return None
        if channel is Channel.CALL and result is not None:
            await self._record(events.OutreachAttempted(
                attempt=attempt, result=result, consent_record=consent
            ))
            return result
        if channel is Channel.VOICEMAIL:
            if result is not CallResult.ANSWERED:  # the provider says it was not recorded
                await self._record(events.OutreachFailed(
                    attempt=attempt, channel=channel, reason="voicemail not delivered",
                    consent_record=consent,
                ))
                return None
            await self._record(events.VoicemailLeft(attempt=attempt, consent_record=consent))
        else:
            await self._record(events.MessageSent(
                attempt=attempt, channel=channel, consent_record=consent
            ))
        return SENT

    async def _run_step(
        self,
        activity: Callable[[Any, Any], Awaitable[Any]],
        arg: Any,
        *,
        stop: Callable[[], bool],
        closes: datetime | None = None,
        retry: RetryPolicy = OUTREACH_RETRY,
        limit: timedelta = OUTREACH_TIMEOUT,
        heartbeat: timedelta | None = OUTREACH_HEARTBEAT,
        result_type: Any = None,
    ) -> Any:
        """Run one activity so that `stop` can cancel it in flight.

        Raises `_Stopped` when `stop()` came true first: the activity is cancelled (it hears
        of it at its next heartbeat) and may still have had its effect. `closes`: no try
        starts, and no retry runs, after this instant.
        """
        options: dict[str, Any] = {
            "start_to_close_timeout": limit,
            "schedule_to_close_timeout": None if closes is None else closes - workflow.now(),
            "heartbeat_timeout": heartbeat,
            "retry_policy": retry,
            "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            "priority": OUTREACH_PRIORITY,
        }
        # `result_type`: the outreach steps' results decode as StepOutcome or, in
        # histories from before the client directory, a bare CallResult (see _REPORTED).
        step = (workflow.start_activity_method(activity, arg, **options)
                if result_type is None else
                workflow.start_activity(activity.__name__, arg, result_type=result_type,
                                        **options))
        await workflow.wait_condition(lambda: step.done() or stop())
        if step.done():
            return step.result()
        # The protocol moves on now; the session closes only once the step has stopped.
        step.cancel()
        self._stopping.append(step)
        raise _Stopped

    def _skip_reason(self, channel: Channel) -> str | None:
        """Why this channel may not be used now, or None if it may (rules the session holds)."""
        reason = protocol.skip_reason(self._booking, channel)
        if reason is not None or channel is not Channel.TEXT:
            return reason
        if self._opted_out_of_text:
            return "the client opted out of texts"
        if self._client_today() in self._texted_on:
            return "a text was already sent today"
        return None

    async def _text_refusal(self) -> str | None:
        """The client-wide text rules, from every session's trail (opt-out; one a day)."""
        booking = self._booking
        day_start, day_end = contact_window.local_day(workflow.now(), booking.client.time_zone)
        try:
            refusal: str | None = await self._run_step(
                TextPolicyActivities.text_refusal,
                TextCheck(client_ref=booking.client.ref, day_start=day_start, day_end=day_end),
                stop=self._outreach_stops, retry=RECORD_RETRY, limit=RECORD_TIMEOUT,
                heartbeat=None,
            )
        except _Stopped:
            return "outreach stopped"  # not recorded: the caller sees outreach has stopped
        return refusal

    def _reachable(self) -> bool:
        """Whether any channel of the ladder could still reach the client."""
        return any(
            channel not in self._unusable and protocol.skip_reason(self._booking, channel) is None
            and not (channel is Channel.TEXT and self._opted_out_of_text)
            for channel in protocol.outreach_channels(self._booking)
        )

    def _client_today(self) -> date:
        return contact_window.local_date(workflow.now(), self._booking.client.time_zone)

    def _window_open(self) -> bool:
        booking = self._booking
        return contact_window.is_open(
            workflow.now(), booking.client.time_zone, booking.protocol.contact_window
        )

    async def _wait_for_contact_window(self, action: str) -> bool:
        """Outside the client's contact window, wait for it to open (recorded).

        Returns False if outreach should stop instead (contact, or a decision, came in).
        """
        booking = self._booking
        opens = contact_window.next_allowed(
            workflow.now(), booking.client.time_zone, booking.protocol.contact_window
        )
        if opens <= workflow.now():
            return True
        if self._escalation is None and protocol.escalation_may_go_outside_window(booking):
            # High risk, and the protocol says not to wait overnight to escalate.
            await self._escalate()
            if self._outreach_stops():
                return False
        await self._record(events.OutreachDeferred(
            action=action, reason="outside the client's contact window", until=opens
        ))
        self._plan_next(SessionStatus.OUTREACH, f"{action} (contact window opens)", opens)
        return await self._wait_during_outreach(opens)

    async def _wait_during_outreach(self, until: datetime) -> bool:
        """Wait until `until`; False if outreach should stop instead (contact, a decision)."""
        return not await self._wait(self._outreach_stops, until)

    async def _acknowledge_contact(self) -> Outcome:
        """The client checked in late or got back to us, or a clinician ended outreach."""
        if self._check_in is not None:
            await self._record(events.CheckedIn(late=True))
            return Outcome.ATTENDED_LATE
        response = self._response
        if response is not None:
            await self._record(events.ClientResponded(
                channel=response.channel, responder=response.responder, note=response.note
            ))
            return Outcome.REACHED
        # The decision itself was recorded when the clinician made it.
        if self._ending is DecisionKind.MARK_SAFE:
            return Outcome.MARKED_SAFE
        assert self._ending is DecisionKind.STAND_DOWN  # _outreach_stops() guarantees it
        return Outcome.STOOD_DOWN

    async def _note_unclear_answer(
        self, channel: ResponseChannel, responder: str, why: str, *,
        attempt: int | None = None, note: str = "",
    ) -> None:
        """An answer not clearly the client's: outreach goes on, and a person decides."""
        self._unclear_answers += 1
        notice = self._notice(
            f"answer-unclear-{self._unclear_answers}",
            InboxItemKind.TASK,
            Priority.URGENT,
            "An answer to outreach was not clearly the client's: confirm who answered, "
            "then record the response or a decision",
        )
        await self._notify_therapist(notice)
        await self._record(events.AnswerUnclear(
            channel=channel, responder=responder, why=why, attempt=attempt, note=note,
            task=notice.key,
        ))

    async def _escalate(self, override: ClinicianDecision | None = None) -> str:
        """Reach the emergency contact if consent is on file (or a clinician decided so).

        Without either, an urgent task says why not. Inside the contact window only, unless
        the protocol lets high-risk escalation go outside it, or a clinician decided now.
        One escalation at a time; a clinician's runs at once, beside the ladder. Returns
        what happened, for the clinician's answer.
        """
        booking = self._booking
        contact = booking.client.emergency_contact
        if contact is None:
            blocker: str | None = "no emergency contact on file"
        else:
            blocker = None if override is not None else protocol.escalation_blocker(booking)
        if override is None:
            self._plan_next(SessionStatus.ESCALATION, "escalate", workflow.now())
            if (blocker is None and not self._window_open()
                    and not protocol.escalation_may_go_outside_window(booking)
                    and not await self._wait_for_contact_window("escalation")):
                return "outreach stopped first"
        async with self._escalating:
            if self._escalation is Escalation.SENT:
                return "not needed: the emergency contact has already been told"
            if override is None and self._escalation is not None:
                return "already considered"  # a clinician's decision came first
            if blocker is not None or contact is None:
                reason = blocker or "no emergency contact on file"
                await self._block_escalation(reason)
                return f"not carried out: {reason}; the therapist has an urgent task"
            return await self._call_emergency_contact(contact, override)

    async def _call_emergency_contact(  # noqa: PLR0911 - one exit per outcome
        self, contact: EmergencyContact, override: ClinicianDecision | None
    ) -> str:
        """Tell the emergency contact the minimum necessary, and record what came of it."""
        booking = self._booking
        outside_window = not self._window_open()
        self._escalation_calls += 1
        step = "escalation" if self._escalation_calls == 1 else (
            f"escalation-{self._escalation_calls}"  # a later decision is a new call
        )
        request = EscalationRequest(
            idempotency_key=f"{workflow.info().workflow_id}/{step}",
            session_id=booking.session_id,
            client_ref=booking.client.ref,
            client_first_name=booking.client.first_name,
            contact=contact,
            risk_tier=booking.risk_tier,
            clinician_override=override is not None,
        )
        basis: EscalationBasis = "clinician decision" if override else "consent on file"
        # A clinician's escalation stops only for a later decision; the protocol's also
        # when the client is reached.
        stop = self._decided if override is not None else self._outreach_stops
        try:
            result, consent = _reported(await self._run_step(
                OutreachActivities.call_emergency_contact, request, stop=stop,
                result_type=_REPORTED,
            ))
        except _Stopped:
            return await self._escalation_uncertain(
                basis, f"stopped in flight: {self._stop_reason()}", task=False
            )
        except ActivityError as error:
            refusal = _no_consent(error)
            if refusal is not None:  # withdrawn since booking: the directory says so now
                await self._block_escalation(refusal[1])
                return f"not carried out: {refusal[1]}; the therapist has an urgent task"
            uncertain = _uncertainty(error)
            if uncertain is not None:
                return await self._escalation_uncertain(basis, uncertain, task=True)
            reason = f"emergency contact unreachable ({_failure_reason(error)})"
            await self._block_escalation(reason)
            return f"not carried out: {reason}; the therapist has an urgent task"
        if result is CallResult.ANSWERED_UNKNOWN:
            return await self._escalation_uncertain(
                basis, "the provider could not tell whether a person answered", task=True
            )
        if result is not CallResult.ANSWERED:  # the provider says it did not reach them
            reason = "emergency contact unreachable (the call was not answered)"
            await self._block_escalation(reason)
            return f"not carried out: {reason}; the therapist has an urgent task"
        window = None
        if outside_window:
            window = ("clinician decision" if override is not None
                      else "protocol allows for high risk")
        if override is None:
            sent = events.EscalationSent(
                basis="consent on file", consent_date=contact.consent_date,
                outside_contact_window=window, consent_record=consent,
            )
        else:
            sent = events.EscalationSent(
                basis="clinician decision", legal_basis=override.legal_basis,
                decided_by=override.clinician_id, reason=override.reason,
                consent_on_file=protocol.escalation_blocker(booking) is None,
                outside_contact_window=window,
            )
        await self._record(sent)
        self._set_escalation(Escalation.SENT)
        return "carried out: the emergency contact was told"

    async def _escalation_uncertain(self, basis: EscalationBasis, reason: str, *,
                                    task: bool) -> str:
        """The contact's message may have reached them: neither sent nor blocked.

        `task`: a person must confirm (not when a clinician's own decision stopped it).
        """
        key = None
        if task:
            notice = self._notice(
                f"escalation-uncertain-{self._escalation_calls}",
                InboxItemKind.TASK,
                Priority.URGENT,
                f"The emergency contact may not have been reached ({reason}): confirm with "
                "them, or decide (escalate_now calls again)",
            )
            await self._notify_therapist(notice)
            key = notice.key
        await self._record(events.EscalationUncertain(basis=basis, reason=reason, task=key))
        self._set_escalation(Escalation.UNCERTAIN)
        answer = f"uncertain: {reason}; it may have reached the emergency contact"
        return answer + ("; the therapist has an urgent task" if task else "")

    async def _block_escalation(self, reason: str) -> None:
        """Escalation cannot happen: an urgent task puts the decision with the therapist."""
        self._blocked += 1
        notice = self._notice(
            "escalation-blocked" if self._blocked == 1 else f"escalation-blocked-{self._blocked}",
            InboxItemKind.TASK,
            Priority.URGENT,
            f"Client unreachable; escalation blocked: {reason}. Decide next steps now",
        )
        await self._notify_therapist(notice)
        await self._record(events.EscalationBlocked(reason=reason, task=notice.key))
        self._set_escalation(Escalation.BLOCKED)

    def _set_escalation(self, state: Escalation) -> None:
        workflow.upsert_search_attributes([attrs.ESCALATION_LEVEL.value_set(state.value)])
        self._escalation = state

    def _escalated(self) -> bool:
        """Whether the emergency contact was (or may have been) told."""
        return self._escalation in {Escalation.SENT, Escalation.UNCERTAIN}

    async def _plan_follow_up(self, outcome: Outcome, *, escalated: bool) -> FollowUpPlan:
        """Review the attendance pattern and agree concerns and tasks."""
        booking = self._booking
        self._plan_next(SessionStatus.FOLLOW_UP, "plan the follow-up", workflow.now())
        plan = await workflow.execute_activity_method(
            FollowUpActivities.create_follow_up_plan,
            FollowUpRequest(
                session_id=booking.session_id,
                client_ref=booking.client.ref,
                therapist_id=booking.therapist_id,
                risk_tier=booking.risk_tier,
                outcome=outcome,
                session_start=self._start,
                escalated=escalated,
                client_time_zone=booking.client.time_zone,
                session_time_zone=booking.session_time_zone,
                reschedules=self._reschedules,
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )
        await self._record(events.PlanCreated(
            concerns=",".join(concern.kind.value for concern in plan.concerns),
            tasks=",".join(task.kind.value for task in plan.tasks),
            no_shows_90_days=plan.attendance.no_shows,
            consecutive_no_shows=plan.attendance.consecutive_no_shows,
        ))
        return plan

    async def _close(self, outcome: Outcome) -> None:
        """Record the one outcome, with the attendance row, and stop."""
        self._outcome = outcome
        self._plan_next(SessionStatus.CLOSED, None, None,
                        also=[attrs.OUTCOME.value_set(outcome.value)])
        # Decisions and replies accepted before closing are in the trail before `closed`.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._steps_stopped()
        await self._no_show_written()
        booking = self._booking
        async with self._trail:
            closed = self._next_event(events.Closed(outcome=outcome, attempts=self._attempts))
            await self._written(closed, workflow.execute_local_activity_method(
                AuditActivities.record_closing,
                ClosingRecord(
                    event=closed,
                    client_ref=booking.client.ref,
                    therapist_id=booking.therapist_id,
                    start=self._start,
                    outcome=outcome,
                ),
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
            ))

    # -- messages from outside (updates: refused, with the reason, when too late) ----------
    #
    # A validator refuses what can no longer change the session, so the sender hears why at
    # once; each handler checks again (the protocol may have moved on between the two) and
    # only notes the message: the protocol acts on it, and audits it, in order.

    @workflow.update
    def check_in(self, check_in: CheckIn) -> str:
        """The client arrived or joined; too late once follow-up planning has begun."""
        self._refuse_in_handler("check_in", self._check_in_problem())
        if self._check_in is None:
            self._check_in = check_in
        if self._before_no_show():
            return "recorded: the client checked in; the session closes as attended"
        return "recorded: a late check-in; outreach stops, the session closes as attended_late"

    @check_in.validator
    def _validate_check_in(self, check_in: CheckIn) -> None:
        _refuse("check_in", self._check_in_problem())

    @workflow.update
    def cancel(self, cancellation: Cancellation) -> str:
        """The session will not take place; only before it is declared a no-show."""
        self._refuse_in_handler("cancel", self._cancel_problem())
        if self._cancellation is None:
            self._cancellation = cancellation
        return "recorded: the session closes as cancelled"

    @cancel.validator
    def _validate_cancel(self, cancellation: Cancellation) -> None:
        _refuse("cancel", self._cancel_problem())

    @workflow.update
    def reschedule(self, reschedule: Reschedule) -> str:
        """Move the start; only before the session is declared a no-show, never into the past."""
        self._refuse_in_handler("reschedule", self._reschedule_problem(reschedule))
        self._reschedule = reschedule
        return f"recorded: the session now starts at {reschedule.start.isoformat()}"

    @reschedule.validator
    def _validate_reschedule(self, reschedule: Reschedule) -> None:
        _refuse("reschedule", self._reschedule_problem(reschedule))

    @workflow.update
    async def client_responded(self, response: ClientResponse) -> str:
        """The client got back in touch; it counts once the session is a no-show.

        For a high-risk client, a response from someone else is recorded as it came and
        leaves outreach open, with a task for the therapist.
        """
        self._refuse_in_handler("client_responded", acceptance.response_problem(self._status))
        unclear = protocol.response_not_the_client(self._booking, response.responder)
        if unclear is not None:
            await self._note_unclear_answer(
                response.channel, response.responder, unclear, note=response.note
            )
            return UNCLEAR_ANSWER
        if self._response is None:
            self._response = response
        return await self._when_outreach_ends()

    @client_responded.validator
    def _validate_client_responded(self, response: ClientResponse) -> None:
        _refuse("client_responded", acceptance.response_problem(self._status))

    @workflow.update
    async def text_reply(self, reply: TextReply) -> str:
        """The client texted back: STOP opts out of texts; other replies may be a response.

        A reply counts as reaching the client only as the protocol says (never a wrong
        number; for a high-risk client, never a text alone): otherwise it is recorded as it
        came, outreach goes on, and the therapist has a task.
        """
        self._refuse_in_handler("text_reply", self._text_reply_problem(reply))
        if messages.is_opt_out(reply.body):
            if not self._opted_out_of_text:
                self._opted_out_of_text = True
                await self._record(events.OptedOut(channel=Channel.TEXT))
            return "recorded: the client opted out of texts"
        unclear = protocol.reply_not_the_client(self._booking, reply.body)
        if unclear is not None:
            await self._note_unclear_answer(
                ResponseChannel.TEXT, "the client's number", unclear, note=reply.body
            )
            return UNCLEAR_ANSWER
        if self._response is None:
            self._response = ClientResponse(
                channel=ResponseChannel.TEXT, responder="client", note=reply.body
            )
        return await self._when_outreach_ends()

    @text_reply.validator
    def _validate_text_reply(self, reply: TextReply) -> None:
        _refuse("text_reply", self._text_reply_problem(reply))

    async def _when_outreach_ends(self) -> str:
        """The answer to a message that ends outreach: how the session closes, once known."""
        await workflow.wait_condition(lambda: self._outreach_outcome is not None)
        assert self._outreach_outcome is not None
        return f"recorded: outreach stopped, the session closes as {self._outreach_outcome.value}"

    def _check_in_problem(self) -> str | None:
        return acceptance.check_in_problem(
            self._status, cancelled=self._cancellation is not None
        )

    def _cancel_problem(self) -> str | None:
        return acceptance.cancel_problem(self._status, checked_in=self._check_in is not None)

    def _reschedule_problem(self, reschedule: Reschedule) -> str | None:
        return acceptance.reschedule_problem(
            self._booking, reschedule.start, status=self._status,
            checked_in=self._check_in is not None,
            cancelled=self._cancellation is not None, now=workflow.now(),
        )

    def _text_reply_problem(self, reply: TextReply) -> str | None:
        kind = messages.keyword(reply.body)
        if kind is messages.Keyword.OPT_OUT:
            # An opt-out is honoured whenever it comes, until the trail is closed.
            return acceptance.where(self._status) if self._status is SessionStatus.CLOSED else None
        if kind is messages.Keyword.OPT_IN:
            return "an opt-in (START) is the client's consent to texts, not a session's to record"
        return acceptance.response_problem(self._status)

    @staticmethod
    def _refuse_in_handler(name: str, problem: str | None) -> None:
        """The protocol moved on after the validator accepted: refuse rather than ignore."""
        if problem is not None:
            raise ApplicationError(f"{name} refused: {problem}", type="ValueError")

    # -- clinician decisions (updates: validated, recorded, then acted on) ----------------

    @workflow.update
    async def mark_safe(self, decision: ClinicianDecision) -> str:
        """The clinician knows the client is safe: outreach and escalation stop now."""
        self._ending = DecisionKind.MARK_SAFE
        await self._record_decision(DecisionKind.MARK_SAFE, decision)
        return await self._when_outreach_ends()

    @mark_safe.validator
    def _validate_mark_safe(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.MARK_SAFE, decision)

    @workflow.update
    async def escalate_now(self, decision: ClinicianDecision) -> str:
        """Reach the emergency contact now, with or without consent, on a legal basis.

        Carried out at once, beside any step in flight; the answer says what came of it
        (told; not carried out, and why; uncertain), and a task goes with any but the first.
        """
        self._escalate_now_pending = True
        try:
            await self._record_decision(DecisionKind.ESCALATE_NOW, decision)
            return f"recorded: {await self._escalate(override=decision)}"
        finally:
            self._escalate_now_pending = False

    @escalate_now.validator
    def _validate_escalate_now(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.ESCALATE_NOW, decision)

    @workflow.update
    async def stand_down(self, decision: ClinicianDecision) -> str:
        """Stop outreach and escalation now (the practice reached the client another way)."""
        self._ending = DecisionKind.STAND_DOWN
        await self._record_decision(DecisionKind.STAND_DOWN, decision)
        return await self._when_outreach_ends()

    @stand_down.validator
    def _validate_stand_down(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.STAND_DOWN, decision)

    @workflow.update
    async def add_note(self, decision: ClinicianDecision) -> str:
        """Add a clinician's note to the session's trail (the note is the `reason`)."""
        await self._record_decision(DecisionKind.ADD_NOTE, decision)
        return "recorded"

    @add_note.validator
    def _validate_add_note(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.ADD_NOTE, decision)

    def _validate(self, kind: DecisionKind, decision: ClinicianDecision) -> None:
        problem = decisions.problem(
            kind, decision, status=self._status,
            escalated=self._escalation is Escalation.SENT or self._escalate_now_pending,
            decided=self._ending is not None,
        )
        if problem is not None:
            _refuse(kind.value, problem)

    async def _record_decision(self, kind: DecisionKind, decision: ClinicianDecision) -> None:
        await self._record(events.ClinicianDecisionMade(
            decision=kind, clinician_id=decision.clinician_id, reason=decision.reason,
            legal_basis=decision.legal_basis if kind is DecisionKind.ESCALATE_NOW else None,
        ))

    @workflow.query
    def state(self) -> SessionState:
        """Status, attempts made, and what happens next and when."""
        return SessionState(
            status=self._status,
            attempts_made=self._attempts,
            next_action=self._next_action,
            next_action_at=self._next_action_at,
            outcome=self._outcome,
        )

    # -- helpers -------------------------------------------------------------------------

    def _before_no_show(self) -> bool:
        return self._status in {SessionStatus.SCHEDULED, SessionStatus.WAITING}

    def _outreach_over(self) -> bool:
        return self._status in {SessionStatus.FOLLOW_UP, SessionStatus.CLOSED}

    def _has_scheduling_news(self) -> bool:
        return (
            self._check_in is not None
            or self._cancellation is not None
            or self._reschedule is not None
        )

    def _contact_made(self) -> bool:
        return self._check_in is not None or self._response is not None

    def _outreach_stops(self) -> bool:
        """Contact was made, or a clinician ended outreach."""
        return self._contact_made() or self._ending is not None

    def _decided(self) -> bool:
        """A clinician ended outreach (mark_safe, stand_down)."""
        return self._ending is not None

    def _stop_reason(self) -> str:
        """Why outreach stopped, for a step stopped in flight."""
        if self._check_in is not None:
            return "the client checked in"
        if self._response is not None:
            return "the client responded"
        return self._ending.value if self._ending is not None else "outreach stopped"

    def _plan_next(self, status: SessionStatus, action: str | None, at: datetime | None, *,
                   also: Sequence[SearchAttributeUpdate[Any]] = ()) -> None:
        """Move to `status` and tell supervisors (search attribute, UI details) what is next.

        `also`: other search attributes that change at the same moment, in the same upsert.
        """
        updates = list(also)
        if status is not self._status:
            updates.append(attrs.SESSION_STATUS.value_set(status.value))
        if updates:
            workflow.upsert_search_attributes(updates)
        self._status = status
        self._next_action = action
        self._next_action_at = at
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        """The Web UI's "current details": pseudonymous, no clinical content."""
        booking = self._booking
        lines = [
            f"**{self._status.value}** · client `{booking.client.ref}` · "
            f"{booking.risk_tier.value} risk · therapist `{booking.therapist_id}`",
            f"outreach attempts: {self._attempts} of {booking.protocol.max_attempts}",
        ]
        if self._outcome is not None:
            lines.append(f"outcome: **{self._outcome.value}**")
        elif self._next_action is not None and self._next_action_at is not None:
            when = contact_window.local_label(self._next_action_at, booking.client.time_zone)
            lines.append(f"next: {self._next_action} at {when} (client's time)")
        return "\n\n".join(lines)

    async def _wait(self, condition: Callable[[], bool], until: datetime) -> bool:
        """Wait until `condition` holds or `until` passes; True if the condition held."""
        remaining = until - workflow.now()
        if condition() or remaining <= timedelta(0):
            return condition()
        try:
            await workflow.wait_condition(condition, timeout=remaining)
        except TimeoutError:
            return False
        return True

    def _outreach_request(self, step: str) -> OutreachRequest:
        return OutreachRequest(
            idempotency_key=f"{workflow.info().workflow_id}/{step}",
            session_id=self._booking.session_id,
            client=self._booking.client,
        )

    def _notice(
        self, name: str, kind: InboxItemKind, priority: Priority, title: str
    ) -> TherapistNotice:
        booking = self._booking
        return TherapistNotice(
            key=f"{booking.session_id}/{name}",
            session_id=booking.session_id,
            therapist_id=booking.therapist_id,
            kind=kind,
            priority=priority,
            title=f"{title} (client {booking.client.ref})",
        )

    async def _notify_therapist(self, notice: TherapistNotice, *, in_inbox: bool = False) -> None:
        """The inbox row, and with a roster on file, the notice's delivery until acknowledged.

        The notice is a child workflow with parent-close policy ABANDON: it must outlive
        the session (which closes minutes after a blocked escalation, when follow-up is
        planned), because a notice ends only when a person has acknowledged it; TERMINATE
        or REQUEST_CANCEL would silence the climb exactly when nobody has answered. Its id
        is the notice key's, so it is found (and acknowledged) without the session.
        `in_inbox`: the inbox row is already written (the no-show's records do it).
        """
        if not in_inbox:
            await workflow.execute_activity_method(
                TherapistActivities.notify_therapist,
                notice,
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
            )
        if not workflow.patched(NOTICE_WORKFLOWS):
            return
        booking = self._booking
        plan = await workflow.execute_activity_method(
            NoticeActivities.plan_notice,
            NoticePlanRequest(notice=notice, risk_tier=booking.risk_tier),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )
        if plan is None:  # no roster loaded: the inbox is all there is
            return
        await workflow.start_child_workflow(
            "NoticeWorkflow",
            NoticeRequest(notice=notice, risk_tier=booking.risk_tier,
                          client_ref=booking.client.ref,
                          client_first_name=booking.client.first_name, plan=plan,
                          time_scale=booking.protocol.time_scale),
            id=notice_workflow_id(notice.key),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=attrs.notice_initial(priority=notice.priority.value,
                                                   opened=workflow.now()),
        )

    def _next_event(self, details: events.EventDetails) -> AuditEvent:
        """The trail's next event, numbered here, deterministically; the caller holds the trail."""
        self._sequence += 1
        return events.new_event(
            session_id=self._booking.session_id,
            sequence=self._sequence,
            occurred_at=workflow.now(),
            details=details,
        )

    async def _record(self, details: events.EventDetails) -> None:
        """Append the next event of this session's trail, after the no-show's own.

        Numbered here, deterministically, under the trail's lock. A local activity: a short
        idempotent PostgreSQL write, recorded in the history as one marker (with the event as
        recorded, for `audit replay`'s cross-check) instead of an activity's three events and
        a workflow task. A local activity that wrote its row in a workflow task that then
        failed runs again in the task's retry, with a later clock: the store keeps the first
        write and hands it back.
        """
        await self._no_show_written()
        async with self._trail:
            event = self._next_event(details)
            await self._written(event, workflow.execute_local_activity_method(
                AuditActivities.record_event, event,
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
            ))

    async def _written(self, event: AuditEvent,
                       write: Awaitable[AuditEvent | list[AuditEvent]]) -> None:
        """Await an audit write and number on from where it landed; a refusal stops it all.

        The write says where its events landed: after rows a failed workflow task left and
        the store marked superseded, the trail goes on past them (`AuditStore.record`). A
        refused write (a closed trail holds the place, an event the store cannot keep)
        means the trail and the protocol have parted: going on would act without a record.
        The session is marked failed for supervisors, the therapist gets an urgent task to
        take over by hand, and the workflow fails with the reason (never silently).
        """
        try:
            recorded = await write
            last = recorded[-1] if isinstance(recorded, list) else recorded
            self._sequence = max(self._sequence, last.sequence)
        except (ActivityError, ApplicationError) as error:
            # An activity's failure arrives wrapped; a local activity's, as itself.
            cause = error.cause if isinstance(error, ActivityError) else error
            if not (isinstance(cause, ApplicationError) and cause.type in TRAIL_REFUSED):
                raise
            self._plan_next(SessionStatus.FAILED, "a person takes over the protocol", None)
            await self._notify_therapist(self._notice(
                "trail-refused", InboxItemKind.TASK, Priority.URGENT,
                f"Session stopped: its audit trail refused event #{event.sequence}. "
                "Take over the protocol for this client now",
            ))
            raise ApplicationError(
                f"the audit trail refused event #{event.sequence} ({cause.type}); "
                "the therapist was given an urgent task",
                type="TrailRefused", non_retryable=True,
            ) from error

    async def _steps_stopped(self) -> None:
        """Wait until every step stopped in flight has heard so (or timed out)."""
        for step in self._stopping:
            with contextlib.suppress(ActivityError):
                await step

    async def _no_show_written(self) -> None:
        if self._no_show_documented is not None:
            await self._no_show_documented


def _refuse(name: str, problem: str | None) -> None:
    """A validator's refusal: the caller hears `<name> refused: <reason>`; nothing changed."""
    if problem is not None:
        msg = f"{name} refused: {problem}"
        raise ValueError(msg)


_REPORTED: Any = StepOutcome | CallResult | None
"""What an outreach activity's result decodes as: histories recorded before the client
directory hold a bare CallResult (or null); the same code replays them unchanged."""


def _reported(value: StepOutcome | CallResult | None) -> tuple[CallResult | None, str | None]:
    """The provider's answer and the consent record an outreach step relied on."""
    if isinstance(value, StepOutcome):
        return value.result, value.consent_record
    return value, None


def _no_consent(error: ActivityError) -> tuple[str | None, str] | None:
    """For a step the client's consent history refused: (record relied on, reason)."""
    cause = error.cause
    if not isinstance(cause, ApplicationError) or cause.type != NO_CONSENT:
        return None
    record = cause.details[0] if cause.details else None
    return (record if isinstance(record, str) else None), cause.message


def _is_invalid_contact(error: ActivityError) -> bool:
    cause = error.cause
    return isinstance(cause, ApplicationError) and cause.type == INVALID_CONTACT


STEPS: dict[Channel, Callable[[OutreachActivities, OutreachRequest], Awaitable[Any]]] = {
    Channel.CALL: OutreachActivities.call_client,
    Channel.VOICEMAIL: OutreachActivities.leave_voicemail,
    Channel.TEXT: OutreachActivities.send_text,
    Channel.EMAIL: OutreachActivities.send_email,
}
"""Each channel's activity."""
UNCLEAR_ANSWER = (
    "recorded: not clearly the client; outreach goes on, and the therapist has a task to decide"
)


def _uncertainty(error: ActivityError) -> str | None:
    """Why a failed step may still have reached its recipient, or None if it did not."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == DELIVERY_UNCERTAIN:
        return UNCERTAIN_REASON
    if isinstance(cause, StepTimeoutError) and cause.type is TimeoutType.SCHEDULE_TO_CLOSE:
        return "the client's contact window closed while the step was tried"
    return None


def _failure_reason(error: ActivityError) -> str:
    """A short, non-identifying reason for the audit trail."""
    if _is_invalid_contact(error):
        return "invalid contact"
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == CHANNEL_REJECTED:
        return "rejected by the channel"
    if error.retry_state is RetryState.TIMEOUT:
        return "the client's contact window closed while the step was retried"
    return "channel failed after retries"
