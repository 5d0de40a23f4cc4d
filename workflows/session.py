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
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority as TaskPriority
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities, ClosingRecord, NoShowRecord
    from activities.follow_up import FollowUpActivities
    from activities.outreach import (
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


SENT = _Sent()
StepResult = CallResult | _Sent

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
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=[INVALID_CONTACT, CHANNEL_REJECTED],
)
"""A channel that keeps failing counts as a failed attempt rather than stalling the ladder."""

OUTREACH_PRIORITY = TaskPriority(priority_key=1)
"""Reaching a person goes ahead of bookkeeping when the task queue is backed up (a burst of
sessions whose grace periods expire together): records keep the default priority, 3."""

RECORD_TIMEOUT = timedelta(seconds=30)
OUTREACH_TIMEOUT = timedelta(minutes=2)


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
        self._escalation: bool | None = None
        """None until escalation is considered; then whether the contact was told."""
        self._escalate_now: ClinicianDecision | None = None
        """A clinician's escalate_now, accepted and recorded, not yet carried out."""
        self._ending: DecisionKind | None = None
        """mark_safe or stand_down: outreach ends with that decision."""
        self._unusable: set[Channel] = set()
        """Channels whose address proved invalid (a bounced email, a dead number)."""
        self._opted_out_of_text = False
        self._texted_on: set[date] = set()
        """The client's local days on which an automated text was sent."""

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
            outcome = await self._reach_out()
            plan = await self._plan_follow_up(outcome, escalated=bool(self._escalation))
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

    async def _reach_out(self) -> Outcome:  # noqa: PLR0911 - each exit is a protocol exit
        """Run the outreach ladder until contact, a clinician's decision, or its end."""
        booking = self._booking
        escalate_after = protocol.escalation_after_attempt(booking)
        for attempt in range(1, booking.protocol.max_attempts + 1):
            if self._outreach_stops():
                return await self._acknowledge_contact()
            self._attempts = attempt
            if not await self._wait_for_contact_window(f"outreach attempt {attempt}"):
                return await self._acknowledge_contact()
            self._plan_next(SessionStatus.OUTREACH, f"outreach attempt {attempt}", workflow.now())
            if await self._attempt(attempt):
                await self._record(events.ClientResponded(
                    channel=ResponseChannel.CALL, responder="client", attempt=attempt
                ))
                return Outcome.REACHED
            if self._outreach_stops():
                return await self._acknowledge_contact()
            reachable = self._reachable()
            await self._escalate_if_requested()
            if self._escalation is None and (attempt >= escalate_after or not reachable):
                await self._escalate()
            if not reachable or attempt == booking.protocol.max_attempts:
                break
            next_at = workflow.now() + protocol.attempt_spacing(booking)
            self._plan_next(SessionStatus.OUTREACH, f"outreach attempt {attempt + 1}", next_at)
            if not await self._wait_during_outreach(next_at):
                return await self._acknowledge_contact()
        await self._escalate_if_requested()
        if self._escalation is None:
            await self._escalate()
        if self._outreach_stops():  # contact or a decision came in while we escalated
            return await self._acknowledge_contact()
        return protocol.unreachable_outcome(escalated=bool(self._escalation))

    async def _attempt(self, attempt: int) -> bool:
        """One outreach attempt: each of the protocol's channels in turn, with consent.

        Returns whether the client answered the call. A step without consent (or after an
        opt-out, or over the daily text limit) is skipped and the reason recorded; a channel
        whose address proved invalid is not tried again; a channel outage is a failed step,
        and the attempt moves on to the next channel.
        """
        call_rang_unanswered: bool | None = None
        for channel in protocol.outreach_channels(self._booking):
            if self._outreach_stops():
                return False
            if channel in self._unusable:
                continue
            reason = self._skip_reason(channel)
            if reason is None and channel is Channel.TEXT:
                reason = await self._text_refusal()
            if reason is not None:
                await self._record(
                    events.OutreachSkipped(attempt=attempt, channel=channel, reason=reason)
                )
                continue
            if channel is Channel.CALL:
                result = await self._step(attempt, channel, OutreachActivities.call_client)
                if result is CallResult.ANSWERED:
                    return True
                call_rang_unanswered = result is CallResult.NO_ANSWER
            elif channel is Channel.VOICEMAIL:
                if call_rang_unanswered is False:  # the call failed: no line to leave it on
                    continue
                await self._step(attempt, channel, OutreachActivities.leave_voicemail)
            elif channel is Channel.TEXT:
                if await self._step(attempt, channel, OutreachActivities.send_text) is not None:
                    self._texted_on.add(self._client_today())
            else:
                await self._step(attempt, channel, OutreachActivities.send_email)
        return False

    async def _step(
        self,
        attempt: int,
        channel: Channel,
        activity: Callable[[OutreachActivities, OutreachRequest], Awaitable[StepOutcome]],
    ) -> StepResult | None:
        """Run one channel's activity and record what happened; None if it failed.

        The activity reads the client's consent as of the step (client directory) and
        reports the record it relied on; each event below names it. A step the directory
        refuses is recorded as skipped, naming the record that refused it.
        """
        request = self._outreach_request(f"attempt-{attempt}/{channel.value}")
        try:
            result, consent = _reported(await workflow.execute_activity(
                activity.__name__,
                request,
                result_type=_REPORTED,
                start_to_close_timeout=OUTREACH_TIMEOUT,
                retry_policy=OUTREACH_RETRY,
                priority=OUTREACH_PRIORITY,
            ))
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
            if result is CallResult.NO_ANSWER:  # the provider says it was not recorded
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

    def _skip_reason(self, channel: Channel) -> str | None:
        """Why this channel may not be used now, or None if it may."""
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
        return await workflow.execute_activity_method(
            TextPolicyActivities.text_refusal,
            TextCheck(client_ref=booking.client.ref, day_start=day_start, day_end=day_end),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )

    def _reachable(self) -> bool:
        """Whether any channel of the ladder could still reach the client."""
        return any(
            channel not in self._unusable and protocol.skip_reason(self._booking, channel) is None
            and not (channel is Channel.TEXT and self._opted_out_of_text)
            for channel in protocol.outreach_channels(self._booking)
        )

    def _client_today(self) -> date:
        return contact_window.local_date(workflow.now(), self._booking.client.time_zone)

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
        """Wait until `until`, carrying out an escalate_now that arrives meanwhile.

        Returns False if outreach should stop instead (contact, or a decision, came in).
        """
        while await self._wait(self._outreach_news, until):
            if self._outreach_stops():
                return False
            await self._escalate_if_requested()
        return True

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

    async def _escalate_if_requested(self) -> None:
        """Carry out a clinician's escalate_now, if one is waiting."""
        decision = self._escalate_now
        if decision is None:
            return
        if self._escalation is not True:
            await self._escalate(override=decision)
        self._escalate_now = None  # only now: until done, a second escalate_now is refused

    async def _escalate(self, override: ClinicianDecision | None = None) -> None:
        """Call the emergency contact if consent is on file (or a clinician decided so).

        Without either, an urgent task says why not. Inside the contact window only, unless
        the protocol lets high-risk escalation go outside it, or a clinician decided now.
        """
        booking = self._booking
        contact = booking.client.emergency_contact
        self._plan_next(SessionStatus.ESCALATION, "escalate", workflow.now())
        blocker = protocol.escalation_blocker(booking)
        if contact is None or (blocker is not None and override is None):
            await self._block_escalation(blocker or "no emergency contact on file")
            return
        outside_window = not contact_window.is_open(
            workflow.now(), booking.client.time_zone, booking.protocol.contact_window
        )
        if (outside_window and override is None
                and not protocol.escalation_may_go_outside_window(booking)):
            if not await self._wait_for_contact_window("escalation"):
                return
            if self._escalation is True:  # a clinician's escalate_now came first
                return
            outside_window = False
        request = EscalationRequest(
            idempotency_key=f"{workflow.info().workflow_id}/escalation",
            session_id=booking.session_id,
            client_ref=booking.client.ref,
            client_first_name=booking.client.first_name,
            contact=contact,
            risk_tier=booking.risk_tier,
            clinician_override=override is not None,
        )
        try:
            delivered, consent = _reported(await workflow.execute_activity(
                OutreachActivities.call_emergency_contact.__name__,
                request,
                result_type=_REPORTED,
                start_to_close_timeout=OUTREACH_TIMEOUT,
                retry_policy=OUTREACH_RETRY,
                priority=OUTREACH_PRIORITY,
            ))
        except ActivityError as error:
            refusal = _no_consent(error)
            if refusal is not None:  # withdrawn since booking: the directory says so now
                await self._block_escalation(refusal[1])
                return
            await self._block_escalation(
                f"emergency contact unreachable ({_failure_reason(error)})"
            )
            return
        if delivered is CallResult.NO_ANSWER:  # the provider says the call did not reach them
            await self._block_escalation(
                "emergency contact unreachable (the call was not answered)"
            )
            return
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
                consent_on_file=blocker is None, outside_contact_window=window,
            )
        await self._record(sent)
        workflow.upsert_search_attributes([attrs.ESCALATION_LEVEL.value_set("sent")])
        self._escalation = True

    async def _block_escalation(self, reason: str) -> None:
        """Escalation cannot happen: an urgent task puts the decision with the therapist."""
        notice = self._notice(
            "escalation-blocked",
            InboxItemKind.TASK,
            Priority.URGENT,
            f"Client unreachable; escalation blocked: {reason}. Decide next steps now",
        )
        await self._notify_therapist(notice)
        await self._record(events.EscalationBlocked(reason=reason, task=notice.key))
        workflow.upsert_search_attributes([attrs.ESCALATION_LEVEL.value_set("blocked")])
        self._escalation = False

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
    def client_responded(self, response: ClientResponse) -> str:
        """The client got back in touch; it counts once the session is a no-show."""
        self._refuse_in_handler("client_responded", acceptance.response_problem(self._status))
        if self._response is None:
            self._response = response
        return "recorded: outreach stops, the session closes as reached"

    @client_responded.validator
    def _validate_client_responded(self, response: ClientResponse) -> None:
        _refuse("client_responded", acceptance.response_problem(self._status))

    @workflow.update
    async def text_reply(self, reply: TextReply) -> str:
        """The client texted back: STOP opts out of texts; anything else is a response."""
        self._refuse_in_handler("text_reply", self._text_reply_problem(reply))
        if messages.is_opt_out(reply.body):
            if not self._opted_out_of_text:
                self._opted_out_of_text = True
                await self._record(events.OptedOut(channel=Channel.TEXT))
            return "recorded: the client opted out of texts"
        if self._response is None:
            self._response = ClientResponse(
                channel=ResponseChannel.TEXT, responder="client", note=reply.body
            )
        return "recorded: outreach stops, the session closes as reached"

    @text_reply.validator
    def _validate_text_reply(self, reply: TextReply) -> None:
        _refuse("text_reply", self._text_reply_problem(reply))

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
        if messages.is_opt_out(reply.body):
            # An opt-out is honoured whenever it comes, until the trail is closed.
            return acceptance.where(self._status) if self._status is SessionStatus.CLOSED else None
        return acceptance.response_problem(self._status)

    @staticmethod
    def _refuse_in_handler(name: str, problem: str | None) -> None:
        """The protocol moved on after the validator accepted: refuse rather than ignore."""
        if problem is not None:
            raise ApplicationError(f"{name} refused: {problem}", type="ValueError")

    # -- clinician decisions (updates: validated, recorded, then acted on) ----------------

    @workflow.update
    async def mark_safe(self, decision: ClinicianDecision) -> str:
        """The clinician knows the client is safe: outreach and escalation stop."""
        self._ending = DecisionKind.MARK_SAFE
        await self._record_decision(DecisionKind.MARK_SAFE, decision)
        return "recorded: outreach stops, the session closes as marked_safe"

    @mark_safe.validator
    def _validate_mark_safe(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.MARK_SAFE, decision)

    @workflow.update
    async def escalate_now(self, decision: ClinicianDecision) -> str:
        """Contact the emergency contact now, with or without consent, on a legal basis."""
        self._escalate_now = decision
        await self._record_decision(DecisionKind.ESCALATE_NOW, decision)
        return "recorded: the emergency contact is contacted now"

    @escalate_now.validator
    def _validate_escalate_now(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.ESCALATE_NOW, decision)

    @workflow.update
    async def stand_down(self, decision: ClinicianDecision) -> str:
        """Stop outreach and escalation (e.g. the practice reached the client another way)."""
        self._ending = DecisionKind.STAND_DOWN
        await self._record_decision(DecisionKind.STAND_DOWN, decision)
        return "recorded: outreach stops, the session closes as stood_down"

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
            escalated=self._escalation is True or self._escalate_now is not None,
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

    def _outreach_news(self) -> bool:
        """Something a wait during outreach must wake up for."""
        return self._outreach_stops() or self._escalate_now is not None

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
            lines.append(f"next: {self._next_action} at {self._next_action_at:%Y-%m-%d %H:%M} UTC")
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

    async def _notify_therapist(self, notice: TherapistNotice) -> None:
        await workflow.execute_activity_method(
            TherapistActivities.notify_therapist,
            notice,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
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

    async def _written(self, event: AuditEvent, write: Awaitable[object]) -> None:
        """Await an audit write; if the trail refuses it for good, stop with a person told.

        A refused write (another event at this place, an event the store cannot keep) means
        the trail and the protocol have parted: going on would act without a record. The
        session is marked failed for supervisors, the therapist gets an urgent task to take
        over by hand, and the workflow fails with the reason (never silently).
        """
        try:
            await write
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


def _failure_reason(error: ActivityError) -> str:
    """A short, non-identifying reason for the audit trail."""
    if _is_invalid_contact(error):
        return "invalid contact"
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == CHANNEL_REJECTED:
        return "rejected by the channel"
    if isinstance(cause, ApplicationError) and cause.type == DELIVERY_UNCERTAIN:
        return UNCERTAIN_REASON
    return "channel failed after retries"
