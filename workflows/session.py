"""One scheduled session, carried through the missed-session protocol.

Read `run` top to bottom as the therapist's protocol: wait for the start, wait out the
grace period for a check-in, alert the therapist, reach out (the protocol's channels in
order, each only with the client's consent and only inside the client's local contact
window) a set number of times, escalate to the emergency contact only with consent or a
clinician's recorded decision, plan the follow-up from the attendance pattern, and close
with one outcome. Messages may arrive at any point; their handlers only note them, and the
protocol acts on them (and audits them) in order. Clinician decisions are updates: a
validator refuses what cannot apply now, and an accepted decision is in the audit trail
before the caller hears back.

What the session knows is one value, `SessionFacts` (`missed_session.domain.facts`): a fold
of the events its trail records, and the news noted since. Whether to escalate is one pure
decision (`missed_session.domain.escalation`). The trail (`workflows.trail`), the steps that
reach people (`workflows.steps`), the notices to clinicians (`workflows.clinicians`) and the
wait for a person before closing (`workflows.clinician_wait`) are the machinery below it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities.audit import (
        AuditActivities,
        ClosingRecord,
        NoShowDocumented,
        NoShowRecord,
    )
    from activities.follow_up import FollowUpActivities
    from activities.outreach import OutreachActivities
    from missed_session.domain import (
        contact_window,
        events,
        facts,
        person,
        protocol,
        step_reports,
    )
    from missed_session.domain.facts import OUTSIDE_WINDOW, SessionFacts
    from missed_session.domain.models import (
        AuditEvent,
        CallResult,
        Channel,
        DecisionKind,
        FollowUpPlan,
        FollowUpRequest,
        NoticeKind,
        Outcome,
        OutreachRequest,
        Priority,
        ResponseChannel,
        RiskTier,
        SessionBooking,
        SessionResult,
        SessionStatus,
    )
    from missed_session.temporal import search_attributes as attrs

from workflows.brake import HELD_ALERT, BrakeHold
from workflows.caring_offer import offer_caring
from workflows.clinician_wait import ClinicianWait
from workflows.clinicians import Clinicians
from workflows.escalating import Escalating
from workflows.letters import Letters
from workflows.notice_reasons import NoticeReasons
from workflows.patches import ALERT_PLANNED, STATUS_AT_OUTREACH, Patches
from workflows.person import PersonLadder
from workflows.session_messages import SessionMessages
from workflows.steps import LadderRunning, Steps, wait_until
from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT, TRAIL_CLOSING, Trail

STEPS: dict[Channel, Callable[..., Awaitable[Any]]] = {
    Channel.CALL: OutreachActivities.call_client,
    Channel.VOICEMAIL: OutreachActivities.leave_voicemail,
    Channel.TEXT: OutreachActivities.send_text,
    Channel.EMAIL: OutreachActivities.send_email,
}
"""Each channel's activity."""


@workflow.defn
class SessionWorkflow(Escalating, SessionMessages, BrakeHold, PersonLadder, ClinicianWait):
    """A scheduled session, from booking to outcome.

    Escalation carried out: `Escalating`; its messages: `SessionMessages`; a hold when many
    sessions are missed at once: `BrakeHold`; one ladder for one person: `PersonLadder`; its
    wait for a person before closing: `ClinicianWait`.
    """

    @workflow.init
    def __init__(self, booking: SessionBooking) -> None:
        self._booking = booking
        self._facts = SessionFacts.booked(booking)
        """What the session knows: changed only by the trail's fold and the notes below."""
        # The machinery in flight, nothing more:
        self._patches = Patches()
        """Which patched branches this session takes (one marker for all, in new ones)."""
        self._trail = Trail(booking.session_id, recorded=self._recorded,
                            refused=self._trail_refused, closing=self._closed_to_news,
                            patched=self._patches.has)
        self._steps = Steps()
        self._clinicians = Clinicians(booking, self._patches)
        self._letters = Letters(booking, self._clinicians, self._patches)
        self._reasons = NoticeReasons(booking, self._clinicians, self._patches)
        self._escalating = asyncio.Lock()
        """Held while the emergency contact is being reached: one escalation at a time."""
        self._escalation_calls = 0
        """Calls to the emergency contact so far; each has its own idempotency key."""
        self._escalate_now_pending = False
        """A clinician's escalate_now is being carried out."""
        self._shown = self._facts.status
        """The status the session's search attribute shows (see `_plan`)."""
        # Shown from the first moment: the first task may wait on its first audit write.
        workflow.set_current_details(self._facts.details(booking))

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
            client_ref=booking.client.ref, therapist_id=booking.therapist_id,
            start=booking.start, duration_minutes=booking.duration_minutes,
            modality=booking.modality, risk_tier=booking.risk_tier,
            grace_period_minutes=protocol.grace_period_minutes(booking),
            protocol=booking.protocol.name, protocol_version=booking.protocol.version,
        ))
        plan: FollowUpPlan | None = None
        outcome = await self._wait_for_check_in()
        if outcome is None:
            # The first call goes out now; the no-show is documented alongside it.
            self._plan(SessionStatus.NO_SHOW, "alert the therapist", workflow.now(),
                       quiet=self._patches.has(STATUS_AT_OUTREACH) and self._at_once())
            held = await self._brake_check() if self._brake_asked() else None
            leader = await self._running_ladder()  # the person's ladder, if one runs
            self._trail.first = asyncio.create_task(self._document_no_show(
                HELD_ALERT if held is not None else self._reasons.no_show_title(self._facts)
                if leader is None else person.alert_title(leader.session_id),
                None if held is not None else self._asking))
            await self._brake_hold(held)  # many sessions missed at once: outreach waits
            outcome = await self._outreach(leader)  # the person's one ladder
            outcome = await self._until_a_person_has_it(outcome)
            await self._ladder_ended(outcome)  # sessions that joined this ladder are told
            await self._reasons.ended(outcome)  # notices it ends resolve, telling those told
            async with self._escalating:  # a clinician's escalation in flight ends first
                pass
            plan = await self._plan_follow_up(outcome)
            await offer_caring(booking, outcome, self._clinicians, self._record, self._patches)
        await self._close(outcome)
        return SessionResult(session_id=booking.session_id, outcome=outcome,
                             attempts_made=self._facts.attempts, plan=plan)

    async def _wait_for_check_in(self) -> Outcome | None:
        """Sleep until the start, then wait out the grace period.

        Returns the outcome when the session ends here (checked in, cancelled), or None
        when the grace period expired without a check-in. A reschedule starts over.
        """
        while True:
            start = self._facts.start
            grace_ends = start + protocol.grace_period(self._booking)
            before_start = workflow.now() < start
            if before_start:
                self._plan(SessionStatus.SCHEDULED, "wait for the start", start)
            else:
                self._plan(SessionStatus.WAITING, "wait for a check-in", grace_ends)
            # News accepted as the deadline passed still counts: it was accepted before it.
            await wait_until(self._scheduling_news, start if before_start else grace_ends)
            if self._facts.check_in is not None:
                await self._record(events.CheckedIn(late=False))
                return Outcome.ATTENDED
            if (cancellation := self._facts.cancellation) is not None:
                await self._record(events.Cancelled(reason=cancellation.reason))
                return Outcome.CANCELLED
            moved, self._facts = self._facts.rescheduling()
            if moved is not None:
                await self._record(events.Rescheduled(
                    previous_start=start, start=moved.start, reason=moved.reason
                ))
                workflow.upsert_search_attributes([attrs.SESSION_START.value_set(moved.start)])
            elif not before_start:
                return None

    async def _document_no_show(self, title: str, asking: datetime | None) -> None:
        """The grace period is over: document the no-show and tell the therapist.

        Runs alongside the first outreach attempt, so that a burst of sessions whose grace
        periods expire together does not queue every first call behind these writes. It
        holds the trail while it runs: its two events come first in the trail, as they
        happened first. One ordinary activity, not local ones: a workflow task waits for its
        local activities, which would hold back the first call's command. `title`: the
        alert's words; `asking`: the person's ladder is still to be asked about (the no-show's
        instant), and the alert names it if it runs. The same activity plans the alert's
        climb (`alert-planned`), so the notice workflow starts from its answer.
        """
        notice = self._clinicians.notice(
            "no-show-alert", NoticeKind.ALERT,
            Priority.URGENT if self._booking.risk_tier is RiskTier.HIGH else Priority.ROUTINE,
            title)
        planned = self._patches.has(ALERT_PLANNED)  # the records plan the alert's climb
        documented: list[NoShowDocumented] = []

        async def document(record: NoShowRecord) -> list[AuditEvent]:
            done = await workflow.execute_activity_method(
                AuditActivities.document_no_show, record,
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY)
            documented.append(done)
            return done.events

        async with self._trail.lock:
            expired_details = events.GracePeriodExpired(
                grace_period_minutes=protocol.grace_period_minutes(self._booking))
            alerted_details = events.TherapistAlerted(notice=notice.key)
            expired = self._trail.next_event(expired_details, min(  # expired, not seen, at
                workflow.now(), self._facts.start + protocol.grace_period(self._booking)))
            alerted = self._trail.next_event(alerted_details)
            record = NoShowRecord(
                expired=expired, notice=notice, alerted=alerted,
                ladder=None if asking is None else self._lookup(asking),
                plan_for=self._booking.risk_tier if planned else None)
            if planned or asking is not None:
                write = document(record)
            else:  # sessions recorded before `alert-planned`, when nothing was to be asked
                write = workflow.execute_activity_method(
                    AuditActivities.record_no_show, record,
                    start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY)
            await self._trail.written(expired, write, expired_details, alerted_details)
        alert = documented[0] if documented else None
        if planned and alert is not None:
            await self._clinicians.told(alert.notice, alert.plan)
        else:
            await self._clinicians.tell(notice if alert is None else alert.notice, in_inbox=True)

    async def _reach_out(self) -> Outcome:
        """Run the outreach ladder until contact, a clinician's decision, or its end."""
        max_attempts = self._booking.protocol.max_attempts
        for attempt in range(1, max_attempts + 1):
            if self._stops() or not await self._wait_for_window(attempt):
                break
            self._plan(SessionStatus.OUTREACH, f"outreach attempt {attempt}", workflow.now())
            if await self._attempt(attempt):
                await self._record(events.ClientResponded(
                    channel=ResponseChannel.CALL, responder="client", attempt=attempt
                ))
                return Outcome.REACHED
            if self._stops():
                break
            reachable = self._facts.reachable(self._booking)
            await self._consider_escalation(attempt)
            if self._stops() or not reachable or attempt == max_attempts:
                break
            next_at = workflow.now() + protocol.attempt_spacing(self._booking)
            self._plan(SessionStatus.OUTREACH, f"outreach attempt {attempt + 1}", next_at)
            if not await self._wait_during_outreach(next_at):
                break
        await self._consider_escalation(None)
        async with self._escalating:  # a clinician's escalation in flight ends first
            pass
        if self._stops():  # contact, or a decision, came in
            return await self._acknowledge_contact()
        return protocol.unreachable_outcome(escalated=self._facts.escalated())

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
            if self._stops():
                return False
            if channel in self._facts.unusable:
                continue
            reason = await self._step_refusal(channel)
            if reason is None and channel is Channel.VOICEMAIL:
                reason = voicemail_skip
            if self._stops():
                return False
            if reason is not None:
                await self._record(
                    events.OutreachSkipped(attempt=attempt, channel=channel, reason=reason)
                )
                continue
            # Nothing is awaited between the checks above and the step's start.
            done = await self._step(attempt, channel)
            if isinstance(done, events.OutreachAttempted) and done.result in {
                CallResult.ANSWERED, CallResult.ANSWERED_UNKNOWN,
            }:
                unclear = protocol.call_not_the_client(self._booking, done.result)
                if unclear is None:
                    return True
                await self._note_unclear_answer(
                    ResponseChannel.CALL, "unknown", unclear, attempt=attempt
                )
                voicemail_skip = "the call was answered, not clearly by the client"
            elif channel is Channel.CALL and not step_reports.went_out(done):
                voicemail_skip = "the call did not go through: no line to leave it on"
        return False

    async def _step_refusal(self, channel: Channel) -> str | None:
        """Why `channel` may not be used at this moment, or None if it may.

        The client-wide text rules are read first (an activity); the in-session rules and the
        contact window are checked after it, so that a STOP that landed meanwhile, or a
        window that closed, wins.
        """
        reason = self._facts.skip_reason(self._booking, channel, workflow.now())
        if reason is None and channel is Channel.TEXT:
            reason = await self._steps.text_refusal(self._booking, stop=self._stops)
        return reason or self._facts.step_refusal(self._booking, channel, workflow.now())

    async def _step(self, attempt: int, channel: Channel) -> events.EventDetails:
        """Run one channel's activity and record what came of it (the event recorded).

        The attempt counts from its first step. The step is cancelled in flight when
        outreach stops, and given up when the client's contact window closes, so that
        nothing reaches the client after it; either way it may have happened, and it is
        recorded so. The activity reads the client's consent as of the step (the client
        directory) and reports the record it relied on; a step the directory refuses is
        recorded as skipped, naming the refusing record.
        """
        self._facts = self._facts.step_begun(attempt)
        booking = self._booking
        closes = contact_window.closes_at(
            workflow.now(), booking.client.time_zone, booking.protocol.contact_window
        )
        request = OutreachRequest(
            idempotency_key=f"{workflow.info().workflow_id}/attempt-{attempt}/{channel.value}",
            session_id=booking.session_id, client=booking.client,
            ladder_since=self._question(),  # asked by this step, before it sends anything
        )
        try:
            report = await self._steps.report(STEPS[channel], request, stop=self._stops,
                                              closes=closes)
        except LadderRunning:
            self._facts = self._facts.step_not_taken(attempt)
            raise
        event = step_reports.outreach_event(attempt, channel, report, self._facts.stop_reason())
        await self._trail.record(event, step_reports.went_out_at(report))
        return event

    async def _wait_for_window(self, attempt: int) -> bool:
        """Outside the client's contact window, wait for it to open (recorded).

        A high-risk escalation the protocol lets go outside the window goes first. Returns
        False if outreach should stop instead (contact, or a decision, came in).
        """
        opens = facts.window_opens(self._booking, workflow.now())
        if opens <= workflow.now():
            return True
        await self._consider_escalation(attempt - 1, deferred=True)
        if self._stops():
            return False
        return await self._defer(f"outreach attempt {attempt}", opens)

    async def _defer(self, action: str, opens: datetime) -> bool:
        """Wait, recorded, for the contact window to open; False if outreach stops first."""
        await self._record(events.OutreachDeferred(action=action, reason=OUTSIDE_WINDOW,
                                                   until=opens))
        self._plan(SessionStatus.OUTREACH, f"{action} (contact window opens)", opens)
        return await self._wait_during_outreach(opens)

    async def _wait_during_outreach(self, until: datetime) -> bool:
        """Wait until `until`; False if outreach should stop instead (contact, a decision)."""
        return not await wait_until(self._stops, until)

    async def _acknowledge_contact(self) -> Outcome:
        """The client checked in late or got back to us, or a clinician ended outreach."""
        if self._facts.check_in is not None:
            await self._record(events.CheckedIn(late=True))
            return Outcome.ATTENDED_LATE
        if (response := self._facts.response) is not None:
            await self._record(events.ClientResponded(
                channel=response.channel, responder=response.responder, note=response.note
            ))
            return Outcome.REACHED
        # The decision itself was recorded when the clinician made it.
        if self._facts.ending is DecisionKind.MARK_SAFE:
            return Outcome.MARKED_SAFE
        assert self._facts.ending is DecisionKind.STAND_DOWN  # _stops() guarantees it
        return Outcome.STOOD_DOWN

    # -- escalation: decided by `escalation.next_escalation`, carried out here ------------

    # -- follow-up and closing -----------------------------------------------------------

    async def _plan_follow_up(self, outcome: Outcome) -> FollowUpPlan:
        """Review the attendance pattern and agree concerns and tasks."""
        booking = self._booking
        escalated = self._facts.escalated()
        self._plan(SessionStatus.FOLLOW_UP, "plan the follow-up", workflow.now())
        plan = await workflow.execute_activity_method(
            FollowUpActivities.create_follow_up_plan,
            FollowUpRequest(
                session_id=booking.session_id, client_ref=booking.client.ref,
                therapist_id=booking.therapist_id, risk_tier=booking.risk_tier,
                outcome=outcome, session_start=self._facts.start, escalated=escalated,
                client_time_zone=booking.client.time_zone,
                session_time_zone=booking.session_time_zone,
                reschedules=self._facts.reschedules,
                related_sessions=self._facts.related_sessions(),
            ),
            start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
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
        self._facts = self._facts.closing(outcome)
        self._plan(SessionStatus.CLOSED, None, None,
                   also=[attrs.OUTCOME.value_set(outcome.value)])
        # Decisions and replies accepted before closing are in the trail before `closed`.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._steps.stopped()
        await self._trail.written_first()
        booking = self._booking
        async with self._trail.lock:
            details = events.Closed(outcome=outcome, attempts=self._facts.attempts)
            closed = self._trail.next_event(details)
            await self._trail.written(closed, workflow.execute_local_activity_method(
                AuditActivities.record_closing,
                ClosingRecord(event=closed, client_ref=booking.client.ref,
                              therapist_id=booking.therapist_id, start=self._facts.start,
                              outcome=outcome),
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
            ), details)

    # -- helpers -------------------------------------------------------------------------

    # Predicates read the facts as they are when asked (the facts are replaced, not changed).

    def _at_once(self) -> bool:
        """At the no-show: whether outreach begins in this same workflow task.

        Not when the brake is asked (an activity) or the contact window is closed (the
        ladder's question is a local activity, and the wait is recorded): the session shows
        `no_show` meanwhile.
        """
        now = workflow.now()
        return not self._brake_asked() and facts.window_opens(self._booking, now) <= now

    def _scheduling_news(self) -> bool:
        return self._facts.scheduling_news()

    def _stops(self) -> bool:
        return self._facts.outreach_stops()

    def _decided(self) -> bool:
        return self._facts.decided()

    async def _record(self, details: events.EventDetails) -> None:
        """Append the next event of this session's trail (after the no-show's own)."""
        await self._trail.record(details)

    async def _record_news(self, details: events.EventDetails) -> bool:
        """Append what a handler heard, unless the session has begun closing (False)."""
        return await self._trail.record_news(details)

    def _closed_to_news(self) -> bool:
        """Whether the trail takes no more news: the session has begun closing."""
        return self._facts.closing_begun() and self._patches.has(TRAIL_CLOSING)

    def _recorded(self, details: events.EventDetails, at: datetime) -> None:
        """An event landed in the trail: fold it into the facts (and tell supervisors)."""
        self._facts = self._facts.apply(details, at)
        self._reasons.noted(details)
        if isinstance(details, events.EscalationSent | events.EscalationBlocked
                      | events.EscalationUncertain):
            assert self._facts.escalation is not None
            workflow.upsert_search_attributes(
                [attrs.ESCALATION_LEVEL.value_set(self._facts.escalation.value)])

    async def _trail_refused(self, event: AuditEvent) -> None:
        """The trail refused `event`: a person takes over the protocol, now."""
        self._plan(SessionStatus.FAILED, "a person takes over the protocol", None)
        await self._clinicians.tell(self._clinicians.notice(
            "trail-refused", NoticeKind.TASK, Priority.URGENT,
            f"Session stopped: its audit trail refused event #{event.sequence}. "
            "Take over the protocol for this client now",
        ))

    def _plan(self, status: SessionStatus, action: str | None, at: datetime | None, *,
              also: Sequence[SearchAttributeUpdate[Any]] = (), quiet: bool = False) -> None:
        """Move to `status` and tell supervisors (search attribute, UI details) what is next.

        `also`: other search attributes that change at the same moment, in the same upsert.
        `quiet`: the status moves on again in this same workflow task, so its search
        attribute waits for that move (one visibility write, not two); the UI details,
        which cost the server nothing, show it at once.
        """
        updates = list(also)
        if status is not self._shown and not quiet:
            updates.append(attrs.SESSION_STATUS.value_set(status.value))
            self._shown = status
        if updates:
            workflow.upsert_search_attributes(updates)
        self._facts = self._facts.moved(status, action, at)
        workflow.set_current_details(self._facts.details(self._booking))
