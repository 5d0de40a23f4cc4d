"""One scheduled session, carried through the missed-session protocol.

Read `run` top to bottom as the therapist's protocol: wait for the start, wait out the
grace period for a check-in, alert the therapist, reach out (call, then voicemail) a set
number of times, escalate to the emergency contact only with consent, plan the follow-up
from the attendance pattern, and close with one outcome. Signals may arrive at any point;
the handlers only note them, and the protocol acts on them (and audits them) in order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities, ClosingRecord
    from activities.follow_up import FollowUpActivities
    from activities.outreach import INVALID_CONTACT, OutreachActivities
    from activities.therapist import TherapistActivities
    from missed_session import search_attributes as attrs
    from missed_session.domain import protocol
    from missed_session.domain.models import (
        AuditEvent,
        AuditEventType,
        CallResult,
        Cancellation,
        CheckIn,
        ClientResponse,
        EscalationRequest,
        FollowUpPlan,
        FollowUpRequest,
        InboxItemKind,
        Outcome,
        OutreachRequest,
        Priority,
        Reschedule,
        RiskTier,
        SessionBooking,
        SessionResult,
        SessionState,
        SessionStatus,
        TherapistNotice,
    )

AuditValue = str | int | float | bool | None

RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["AuditConflict"],
)
"""Records (audit, inbox, plan) are retried until PostgreSQL takes them: none may be lost."""

OUTREACH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=[INVALID_CONTACT],
)
"""A channel that keeps failing counts as a failed attempt rather than stalling the ladder."""

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
        self._attempts = 0
        self._next_action: str | None = "wait for the start"
        self._next_action_at: datetime | None = booking.start
        self._outcome: Outcome | None = None
        self._check_in: CheckIn | None = None
        self._cancellation: Cancellation | None = None
        self._reschedule: Reschedule | None = None
        self._response: ClientResponse | None = None

    # -- the protocol ------------------------------------------------------------------

    @workflow.run
    async def run(self, booking: SessionBooking) -> SessionResult:
        """Carry the session from booking to one outcome."""
        workflow.upsert_search_attributes([
            attrs.CLIENT_REF.value_set(booking.client.ref),
            attrs.THERAPIST_ID.value_set(booking.therapist_id),
            attrs.RISK_TIER.value_set(booking.risk_tier.value),
            attrs.SESSION_START.value_set(booking.start),
            attrs.SESSION_STATUS.value_set(self._status.value),
            attrs.ESCALATION_LEVEL.value_set("none"),
        ])
        await self._record(
            AuditEventType.SCHEDULED,
            client_ref=booking.client.ref,
            therapist_id=booking.therapist_id,
            start=booking.start.isoformat(),
            duration_minutes=booking.duration_minutes,
            modality=booking.modality.value,
            risk_tier=booking.risk_tier.value,
            grace_period_minutes=protocol.grace_period_minutes(booking),
        )
        plan: FollowUpPlan | None = None
        outcome = await self._wait_for_check_in()
        if outcome is None:
            await self._record_no_show()
            outcome, escalated = await self._reach_out()
            plan = await self._plan_follow_up(outcome, escalated=escalated)
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
            if not await self._wait(self._has_scheduling_news, deadline):
                if before_start:
                    continue
                return None
            if self._check_in is not None:
                await self._record(AuditEventType.CHECKED_IN, late=False)
                return Outcome.ATTENDED
            if self._cancellation is not None:
                await self._record(
                    AuditEventType.CANCELLED, reason=self._cancellation.reason
                )
                return Outcome.CANCELLED
            if self._reschedule is not None:
                moved, self._reschedule = self._reschedule, None
                await self._record(
                    AuditEventType.RESCHEDULED,
                    previous_start=self._start.isoformat(),
                    start=moved.start.isoformat(),
                    reason=moved.reason,
                )
                self._start = moved.start
                workflow.upsert_search_attributes([attrs.SESSION_START.value_set(moved.start)])

    async def _record_no_show(self) -> None:
        """The grace period is over: document the no-show and tell the therapist."""
        self._plan_next(SessionStatus.NO_SHOW, "alert the therapist", workflow.now())
        await self._record(
            AuditEventType.GRACE_PERIOD_EXPIRED,
            grace_period_minutes=protocol.grace_period_minutes(self._booking),
        )
        notice = self._notice(
            "no-show-alert",
            InboxItemKind.ALERT,
            Priority.URGENT if self._booking.risk_tier is RiskTier.HIGH else Priority.ROUTINE,
            "No-show: outreach to the client has started",
        )
        await self._notify_therapist(notice)
        await self._record(AuditEventType.THERAPIST_ALERTED, notice=notice.key)

    async def _reach_out(self) -> tuple[Outcome, bool]:
        """Run the outreach ladder; returns the outcome and whether escalation was sent."""
        booking = self._booking
        escalate_after = protocol.escalation_after_attempt(booking)
        escalated: bool | None = None
        for attempt in range(1, booking.protocol.max_attempts + 1):
            if self._contact_made():
                return await self._acknowledge_contact(), bool(escalated)
            self._attempts = attempt
            self._plan_next(SessionStatus.OUTREACH, f"outreach attempt {attempt}", workflow.now())
            answered, reachable = await self._attempt(attempt)
            if answered:
                await self._record(
                    AuditEventType.CLIENT_RESPONDED, channel="call", responder="client",
                    attempt=attempt, note="",
                )
                return Outcome.REACHED, bool(escalated)
            if self._contact_made():
                return await self._acknowledge_contact(), bool(escalated)
            if escalated is None and (attempt >= escalate_after or not reachable):
                escalated = await self._escalate()
            if not reachable or attempt == booking.protocol.max_attempts:
                break
            next_at = workflow.now() + protocol.attempt_spacing(booking)
            self._plan_next(SessionStatus.OUTREACH, f"outreach attempt {attempt + 1}", next_at)
            if await self._wait(self._contact_made, next_at):
                return await self._acknowledge_contact(), bool(escalated)
        if escalated is None:
            escalated = await self._escalate()
        if self._contact_made():  # the client got back in touch while we escalated
            return await self._acknowledge_contact(), escalated
        return protocol.unreachable_outcome(escalated=escalated), escalated

    async def _attempt(self, attempt: int) -> tuple[bool, bool]:
        """Call the client; on no answer, leave the voicemail.

        Returns (answered, reachable): reachable is False once the number proves invalid,
        since calling again cannot help. A channel outage is a failed attempt; the next
        attempt may find the channel back.
        """
        call = self._outreach_request(f"attempt-{attempt}/call")
        try:
            result = await workflow.execute_activity_method(
                OutreachActivities.call_client,
                call,
                start_to_close_timeout=OUTREACH_TIMEOUT,
                retry_policy=OUTREACH_RETRY,
            )
        except ActivityError as error:
            await self._record(
                AuditEventType.OUTREACH_FAILED, attempt=attempt, channel="call",
                reason=_failure_reason(error),
            )
            return False, not _is_invalid_contact(error)
        await self._record(
            AuditEventType.OUTREACH_ATTEMPTED, attempt=attempt, channel="call",
            result=result.value,
        )
        if result is CallResult.ANSWERED:
            return True, True
        voicemail = self._outreach_request(f"attempt-{attempt}/voicemail")
        try:
            await workflow.execute_activity_method(
                OutreachActivities.leave_voicemail,
                voicemail,
                start_to_close_timeout=OUTREACH_TIMEOUT,
                retry_policy=OUTREACH_RETRY,
            )
        except ActivityError as error:
            await self._record(
                AuditEventType.OUTREACH_FAILED, attempt=attempt, channel="voicemail",
                reason=_failure_reason(error),
            )
            return False, True
        await self._record(AuditEventType.VOICEMAIL_LEFT, attempt=attempt)
        return False, True

    async def _acknowledge_contact(self) -> Outcome:
        """The client checked in late or got back to us: outreach stops here."""
        if self._check_in is not None:
            await self._record(AuditEventType.CHECKED_IN, late=True)
            return Outcome.ATTENDED_LATE
        response = self._response
        assert response is not None  # _contact_made() guarantees one of the two
        await self._record(
            AuditEventType.CLIENT_RESPONDED,
            channel=response.channel.value,
            responder=response.responder,
            note=response.note,
        )
        return Outcome.REACHED

    async def _escalate(self) -> bool:
        """Call the emergency contact if consent is on file; otherwise say why not.

        Returns whether the emergency contact was told.
        """
        booking = self._booking
        contact = booking.client.emergency_contact
        self._plan_next(SessionStatus.ESCALATION, "escalate", workflow.now())
        if contact is None or not protocol.may_escalate(booking):
            reason = "no emergency contact on file" if contact is None else "no consent on file"
            return await self._block_escalation(reason)
        request = EscalationRequest(
            idempotency_key=f"{workflow.info().workflow_id}/escalation",
            session_id=booking.session_id,
            client_ref=booking.client.ref,
            client_first_name=booking.client.first_name,
            contact=contact,
        )
        try:
            await workflow.execute_activity_method(
                OutreachActivities.call_emergency_contact,
                request,
                start_to_close_timeout=OUTREACH_TIMEOUT,
                retry_policy=OUTREACH_RETRY,
            )
        except ActivityError as error:
            return await self._block_escalation(
                f"emergency contact unreachable ({_failure_reason(error)})"
            )
        consent_date = contact.consent_date.isoformat() if contact.consent_date else None
        await self._record(
            AuditEventType.ESCALATION_SENT, basis="consent on file", consent_date=consent_date
        )
        workflow.upsert_search_attributes([attrs.ESCALATION_LEVEL.value_set("sent")])
        return True

    async def _block_escalation(self, reason: str) -> bool:
        """Escalation cannot happen: an urgent task puts the decision with the therapist."""
        notice = self._notice(
            "escalation-blocked",
            InboxItemKind.TASK,
            Priority.URGENT,
            f"Client unreachable; escalation blocked: {reason}. Decide next steps now",
        )
        await self._notify_therapist(notice)
        await self._record(AuditEventType.ESCALATION_BLOCKED, reason=reason, task=notice.key)
        workflow.upsert_search_attributes([attrs.ESCALATION_LEVEL.value_set("blocked")])
        return False

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
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )
        await self._record(
            AuditEventType.PLAN_CREATED,
            concerns=",".join(concern.kind.value for concern in plan.concerns),
            tasks=",".join(task.kind.value for task in plan.tasks),
            no_shows_90_days=plan.attendance.no_shows,
            consecutive_no_shows=plan.attendance.consecutive_no_shows,
        )
        return plan

    async def _close(self, outcome: Outcome) -> None:
        """Record the one outcome, with the attendance row, and stop."""
        self._outcome = outcome
        workflow.upsert_search_attributes([attrs.OUTCOME.value_set(outcome.value)])
        self._plan_next(SessionStatus.CLOSED, None, None)
        self._sequence += 1
        booking = self._booking
        await workflow.execute_activity_method(
            AuditActivities.record_closing,
            ClosingRecord(
                event=self._event(
                    AuditEventType.CLOSED,
                    {"outcome": outcome.value, "attempts": self._attempts},
                ),
                client_ref=booking.client.ref,
                therapist_id=booking.therapist_id,
                start=self._start,
                outcome=outcome,
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )

    # -- messages from outside -----------------------------------------------------------

    @workflow.signal
    def check_in(self, check_in: CheckIn) -> None:
        """The client arrived or joined; too late once follow-up planning has begun."""
        if self._outreach_over():
            workflow.logger.warning("check_in ignored in status %s", self._status.value)
        elif self._check_in is None:
            self._check_in = check_in

    @workflow.signal
    def cancel(self, cancellation: Cancellation) -> None:
        """The session will not take place; only before it is declared a no-show."""
        if self._before_no_show() and self._cancellation is None:
            self._cancellation = cancellation
        else:
            workflow.logger.warning("cancel ignored in status %s", self._status.value)

    @workflow.signal
    def reschedule(self, reschedule: Reschedule) -> None:
        """Move the start; only before the session is declared a no-show."""
        if self._before_no_show():
            self._reschedule = reschedule
        else:
            workflow.logger.warning("reschedule ignored in status %s", self._status.value)

    @workflow.signal
    def client_responded(self, response: ClientResponse) -> None:
        """The client got back in touch; it counts once the session is a no-show."""
        if self._before_no_show() or self._outreach_over():
            workflow.logger.warning("client_responded ignored in status %s", self._status.value)
        elif self._response is None:
            self._response = response

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

    def _plan_next(self, status: SessionStatus, action: str | None, at: datetime | None) -> None:
        """Move to `status` and tell supervisors (search attribute, UI details) what is next."""
        if status is not self._status:
            workflow.upsert_search_attributes([attrs.SESSION_STATUS.value_set(status.value)])
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

    def _event(self, event_type: AuditEventType, data: dict[str, AuditValue]) -> AuditEvent:
        return AuditEvent(
            session_id=self._booking.session_id,
            sequence=self._sequence,
            event_type=event_type,
            occurred_at=workflow.now(),
            data=data,
        )

    async def _record(self, event_type: AuditEventType, **data: AuditValue) -> None:
        """Append the next event of this session's trail (numbered here, deterministically)."""
        self._sequence += 1
        await workflow.execute_activity_method(
            AuditActivities.record_event,
            self._event(event_type, data),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )


def _is_invalid_contact(error: ActivityError) -> bool:
    cause = error.cause
    return isinstance(cause, ApplicationError) and cause.type == INVALID_CONTACT


def _failure_reason(error: ActivityError) -> str:
    """A short, non-identifying reason for the audit trail."""
    if _is_invalid_contact(error):
        return "invalid contact"
    return "channel failed after retries"
