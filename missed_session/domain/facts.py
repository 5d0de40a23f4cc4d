"""What a session knows: one frozen value, a fold of the audit events it records.

`SessionFacts.apply(event)` is the only way a recorded event changes what the session
remembers, so its memory and its trail cannot disagree: the workflow applies each event as
its write lands (`workflows.trail`), and anyone holding a trail can rebuild the same facts
(`fold`). Two kinds of knowledge come before the trail and are noted as they arrive:

- news a message handler accepted and the protocol has not yet acted on (a check-in, a
  cancellation, a reschedule, a response, a clinician's ending decision, an opt-out): the
  protocol records it in order, and the event then confirms what was noted;
- where the protocol stands (status, next action and when, an attempt whose first step
  has begun, how outreach ended): it drives the search attributes and the `state` query.

The predicates the protocol and the escalation decision ask (`outreach_stops`,
`reachable`, `skip_reason`, the contact window, today in the client's zone, the Web UI's
details) are read off the facts. Pure: no I/O, no clock (the caller passes `now`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from missed_session.domain import contact_window, events, protocol
from missed_session.domain.brake import BrakeDecision, BrakeState
from missed_session.domain.models import (
    AuditEvent,
    Cancellation,
    Channel,
    CheckIn,
    ClientResponse,
    DecisionKind,
    Model,
    Outcome,
    Reschedule,
    SessionBooking,
    SessionStatus,
)

INVALID_CONTACT_REASON = "invalid contact"
"""The `outreach_failed` reason of a step whose address reaches nobody: the channels that
share the address are not tried again."""
OUTSIDE_WINDOW = "outside the client's contact window"
"""Why a step is skipped, or an action deferred, outside the contact window."""
CLOSING = "the session is closing: its trail ends with its outcome"
"""Why news a handler hears once the session has begun closing is not recorded
(`SessionFacts.closing_begun`)."""


class Escalation(StrEnum):
    """Where escalation to the emergency contact stands (also the EscalationLevel attribute)."""

    SENT = "sent"
    BLOCKED = "blocked"
    UNCERTAIN = "uncertain"


_ESCALATION_EVENTS: dict[type[events.EventDetails], Escalation] = {
    events.EscalationSent: Escalation.SENT,
    events.EscalationBlocked: Escalation.BLOCKED,
    events.EscalationUncertain: Escalation.UNCERTAIN,
}
_ATTEMPT_EVENTS = (events.OutreachAttempted, events.VoicemailLeft, events.MessageSent,
                   events.OutreachFailed, events.OutreachUncertain)
"""Events of a step that ran: the attempt they name has been made (a skipped step has not)."""
_ENDINGS = frozenset({DecisionKind.MARK_SAFE, DecisionKind.STAND_DOWN})
News = CheckIn | Cancellation | Reschedule | ClientResponse | DecisionKind
"""What a message handler notes for the protocol to act on (a decision: its kind)."""


class NoticeNews(Model):
    """What a notice workflow tells its session (a signal): acknowledged, or ran out.

    The session may not close as final until a person has one of its notices, so it must
    hear of them; the notice tells it as it happens rather than the session polling.
    """

    notice: str
    """The notice key."""
    state: Literal["acknowledged", "exhausted"]
    """What happened to it."""
    clinician_id: str | None = None
    """Who acknowledged it (acknowledged only)."""
    again_after_minutes: int = 1
    """The policy's minutes (its first rung's) before a fresh notice climbs again."""

    def event(self) -> events.ClinicianAcknowledged | events.NoticeRanOut:
        """The session's record of this news."""
        if self.state == "acknowledged":
            return events.ClinicianAcknowledged(notice=self.notice,
                                                clinician_id=self.clinician_id or "unknown")
        return events.NoticeRanOut(notice=self.notice,
                                   again_after_minutes=max(self.again_after_minutes, 1))


@dataclass(frozen=True)
class SessionFacts:
    """Everything one session knows, as of its last recorded event and the news since."""

    start: datetime
    """The start as booked or last rescheduled (recorded)."""
    reschedules: int = 0
    """Reschedules recorded."""
    status: SessionStatus = SessionStatus.SCHEDULED
    """Where the protocol stands."""
    next_action: str | None = "wait for the start"
    """What the protocol does next, in words."""
    next_action_at: datetime | None = None
    """When it does it."""
    attempts: int = 0
    """Outreach attempts made: an attempt counts from its first step's start."""
    escalation: Escalation | None = None
    """None until escalation is considered; then where it stands (recorded)."""
    escalate_now_decisions: int = 0
    """Clinicians' escalate_now decisions recorded."""
    unusable: frozenset[Channel] = frozenset()
    """Channels whose address proved invalid (a bounced email, a dead number)."""
    opted_out_of_text: bool = False
    """The client replied STOP (noted at once; recorded as `opted_out`)."""
    texted_at: tuple[datetime, ...] = ()
    """When texts went out (or may have): one a day in the client's zone."""
    check_in: CheckIn | None = None
    """The client checked in (the first check-in counts)."""
    cancellation: Cancellation | None = None
    """The session was cancelled (the first cancellation counts)."""
    reschedule: Reschedule | None = None
    """A reschedule not yet acted on (the latest counts)."""
    response: ClientResponse | None = None
    """The client got back in touch (the first response counts)."""
    ending: DecisionKind | None = None
    """mark_safe or stand_down: outreach ends with that decision."""
    outreach_outcome: Outcome | None = None
    """How outreach ended, once it has: what decisions and responses are told."""
    outcome: Outcome | None = None
    """The session's one outcome, once closing."""
    brake: BrakeState | None = None
    """Where the mass no-show brake stands for this session (recorded), if it held it."""
    brake_episode: str | None = None
    """The brake episode that held it (recorded)."""
    brake_decision: BrakeDecision | None = None
    """A supervisor's release or stand-down, noted while held, not yet recorded."""
    acknowledged_by: str | None = None
    """The first clinician who acknowledged one of the session's notices (recorded)."""
    decisions_recorded: int = 0
    """Clinician decisions recorded, notes included: each is a person in the loop."""
    ran_out: tuple[str, ...] = ()
    """Notices that ran out of steps with nobody acknowledging (recorded)."""
    ran_out_at: datetime | None = None
    """When the notice that calls for a fresh round ran out (None: no round is due)."""
    again_after_minutes: int = 1
    """Its policy's minutes before the fresh round."""
    climbing: str | None = None
    """The fresh notice climbing the ladder now (`notice_renewed`), if any."""
    renewals: int = 0
    """Fresh notice rounds so far."""
    contact_call: str | None = None
    """What the last call to the emergency contact came to (`emergency_contact_called`)."""
    leader: str | None = None
    """The session of the same person whose outreach this one joined (recorded)."""
    joiners: tuple[str, ...] = ()
    """Sessions of the same person that joined this one's outreach (recorded)."""

    @classmethod
    def booked(cls, booking: SessionBooking) -> SessionFacts:
        """A session as booked, before anything happened."""
        return cls(start=booking.start, next_action_at=booking.start)

    # -- the fold -------------------------------------------------------------------------

    def apply(self, details: events.EventDetails, at: datetime) -> SessionFacts:  # noqa: PLR0911
        """The facts once `details`, recorded at `at`, is in the trail."""
        match details:
            case events.Scheduled(start=start):
                return replace(self, start=start)
            case events.Rescheduled(start=start):
                return replace(self, start=start, reschedules=self.reschedules + 1)
            case events.CheckedIn():
                return replace(self, check_in=self.check_in or CheckIn())
            case events.Cancelled(reason=reason):
                return replace(self, cancellation=self.cancellation or Cancellation(reason=reason))
            case events.ClientResponded(channel=channel, responder=responder, note=note):
                response = ClientResponse(channel=channel, responder=responder, note=note)
                return replace(self, response=self.response or response)
            case events.OptedOut(channel=Channel.TEXT):
                return replace(self, opted_out_of_text=True)
            case events.ClinicianDecisionMade(decision=decision):
                return self._decision_recorded(decision)
            case events.Closed(outcome=outcome):
                return replace(self, outcome=outcome)
            case events.BrakeHeld() | events.BrakeReleased() | events.BrakeStoodDown():
                return self._brake_recorded(details)
            case events.JoinedOutreach() | events.OutreachJoined():
                return self._ladder_shared(details)
            case _ if type(details) in _ESCALATION_EVENTS:
                return replace(self, escalation=_ESCALATION_EVENTS[type(details)])
            case _ if isinstance(details, _ATTEMPT_EVENTS):
                return self._step_recorded(details, at)
        return self._loop_recorded(details, at)

    def _decision_recorded(self, decision: DecisionKind) -> SessionFacts:
        facts = replace(self, decisions_recorded=self.decisions_recorded + 1)
        if decision is DecisionKind.ESCALATE_NOW:
            return replace(facts, escalate_now_decisions=facts.escalate_now_decisions + 1)
        if decision in _ENDINGS:
            return replace(facts, ending=facts.ending or decision)
        return facts

    def _loop_recorded(self, details: events.EventDetails, at: datetime) -> SessionFacts:
        """What the session heard of its notices, and of the emergency contact's call."""
        match details:
            case events.ClinicianAcknowledged(clinician_id=clinician):
                return replace(self, acknowledged_by=self.acknowledged_by or clinician)
            case events.NoticeRanOut(notice=key, again_after_minutes=minutes):
                facts = replace(self, ran_out=(*self.ran_out, key))
                if self.climbing not in {None, key}:
                    return facts  # the fresh round still climbs: it will say when it ends
                return replace(facts, climbing=None, ran_out_at=self.ran_out_at or at,
                               again_after_minutes=minutes)
            case events.NoticeRenewed(notice=key, round=round_):
                return replace(self, climbing=key, renewals=round_, ran_out_at=None)
            case events.EmergencyContactCalled(result=result):
                return replace(self, contact_call=result)
        return self

    def _brake_recorded(self, details: events.EventDetails) -> SessionFacts:
        match details:
            case events.BrakeHeld(episode=episode):
                return replace(self, brake=BrakeState.HELD, brake_episode=episode)
            case events.BrakeStoodDown():  # the supervisor's stand-down ends outreach
                return replace(self, brake=BrakeState.STOOD_DOWN,
                               ending=self.ending or DecisionKind.STAND_DOWN)
        return replace(self, brake=BrakeState.RELEASED)
    def _ladder_shared(self, details: events.JoinedOutreach | events.OutreachJoined,
                       ) -> SessionFacts:
        if isinstance(details, events.JoinedOutreach):
            return replace(self, leader=details.leader)
        if details.joiner in self.joiners:
            return self
        return replace(self, joiners=(*self.joiners, details.joiner))

    def _step_recorded(self, details: events.EventDetails, at: datetime) -> SessionFacts:
        attempt: int = getattr(details, "attempt")  # noqa: B009 - every _ATTEMPT_EVENTS has one
        channel: Channel = getattr(details, "channel", Channel.VOICEMAIL)
        facts = replace(self, attempts=max(self.attempts, attempt))
        if isinstance(details, events.OutreachFailed) and details.reason == INVALID_CONTACT_REASON:
            facts = replace(facts, unusable=facts.unusable | protocol.SAME_ADDRESS[channel])
        if channel is Channel.TEXT and isinstance(details, events.MessageSent
                                                  | events.OutreachUncertain):
            facts = replace(facts, texted_at=(*facts.texted_at, at))
        return facts

    # -- what comes before the trail ------------------------------------------------------

    def noted(self, news: News) -> SessionFacts:
        """News a handler accepted, for the protocol to act on (and record) in order."""
        match news:
            case CheckIn():
                return replace(self, check_in=self.check_in or news)
            case Cancellation():
                return replace(self, cancellation=self.cancellation or news)
            case Reschedule():
                return replace(self, reschedule=news)
            case ClientResponse():
                return replace(self, response=self.response or news)
            case DecisionKind.MARK_SAFE | DecisionKind.STAND_DOWN:
                return replace(self, ending=news)
        return self

    def brake_noted(self, decision: BrakeDecision) -> SessionFacts:
        """A supervisor's decision about the hold: taken only while held, the first counts."""
        if self.brake is not BrakeState.HELD or self.brake_decision is not None:
            return self
        if decision.episode not in {None, self.brake_episode}:
            return self
        return replace(self, brake_decision=decision)

    def opting_out(self) -> SessionFacts:
        """A STOP arrived: no further text, from this moment (its `opted_out` follows)."""
        return replace(self, opted_out_of_text=True)

    def rescheduling(self) -> tuple[Reschedule | None, SessionFacts]:
        """The pending reschedule, taken for the protocol to act on."""
        return self.reschedule, replace(self, reschedule=None)

    def step_begun(self, attempt: int) -> SessionFacts:
        """A step of `attempt` starts: the attempt counts from now."""
        return replace(self, attempts=max(self.attempts, attempt))

    def step_not_taken(self, attempt: int) -> SessionFacts:
        """The first step of `attempt` was not taken (the person's ladder runs elsewhere)."""
        return replace(self, attempts=min(self.attempts, attempt - 1))

    def moved(self, status: SessionStatus, action: str | None,
              at: datetime | None) -> SessionFacts:
        """The protocol moved to `status`; `action` is next, at `at`."""
        return replace(self, status=status, next_action=action, next_action_at=at)

    def outreach_ended(self, outcome: Outcome) -> SessionFacts:
        """Outreach ended with `outcome` (contact, a decision, or the ladder's end)."""
        return replace(self, outreach_outcome=outcome)

    def closing(self, outcome: Outcome) -> SessionFacts:
        """The session closes with `outcome` (its `closed` event follows)."""
        return replace(self, outcome=outcome)

    # -- predicates -----------------------------------------------------------------------

    def related_sessions(self) -> tuple[str, ...]:
        """The other sessions of the same person that share this one's ladder."""
        return ((self.leader,) if self.leader is not None else ()) + self.joiners

    def before_no_show(self) -> bool:
        """Whether the session has not (yet) been declared a no-show."""
        return self.status in {SessionStatus.SCHEDULED, SessionStatus.WAITING}

    def closing_begun(self) -> bool:
        """Whether the protocol has begun closing: its trail takes nothing but its end.

        From follow-up on (the outcome is known; what is left is the plan, the caring offer
        and `closed`), and before the no-show once a check-in or a cancellation is noted
        (the protocol closes on it in the same workflow task). News a handler hears then is
        not recorded in the trail (`workflows.trail.Trail.record_news`): a workflow task
        that wrote `closed` and then failed is retried with the news applied first, from
        the facts of the task before it, which already say this.
        """
        return (self.outcome is not None
                or self.status in {SessionStatus.FOLLOW_UP, SessionStatus.CLOSED}
                or (self.before_no_show()
                    and (self.check_in is not None or self.cancellation is not None)))

    def scheduling_news(self) -> bool:
        """A check-in, cancellation or reschedule waits for the protocol."""
        return (self.check_in is not None or self.cancellation is not None
                or self.reschedule is not None)

    def contact_made(self) -> bool:
        """The client checked in late or got back in touch."""
        return self.check_in is not None or self.response is not None

    def decided(self) -> bool:
        """A clinician ended outreach (mark_safe, stand_down)."""
        return self.ending is not None

    def outreach_stops(self) -> bool:
        """Contact was made, or a clinician ended outreach."""
        return self.contact_made() or self.decided()

    def stop_reason(self) -> str:
        """Why outreach stopped, for a step stopped in flight."""
        if self.check_in is not None:
            return "the client checked in"
        if self.response is not None:
            return "the client responded"
        return self.ending.value if self.ending is not None else "outreach stopped"

    def clinician_heard(self) -> bool:
        """Whether a person has the session: a notice acknowledged, or a decision recorded."""
        return (self.acknowledged_by is not None or self.decisions_recorded > 0
                or self.decided())

    def escalated(self) -> bool:
        """Whether the emergency contact was (or may have been) told."""
        return self.escalation in {Escalation.SENT, Escalation.UNCERTAIN}

    def skip_reason(self, booking: SessionBooking, channel: Channel,
                    now: datetime) -> str | None:
        """Why `channel` may not be used now, or None if it may (the rules the session holds)."""
        reason = protocol.skip_reason(booking, channel)
        if reason is not None or channel is not Channel.TEXT:
            return reason
        if self.opted_out_of_text:
            return "the client opted out of texts"
        if self.texted_on(booking, client_today(booking, now)):
            return "a text was already sent today"
        return None

    def step_refusal(self, booking: SessionBooking, channel: Channel,
                     now: datetime) -> str | None:
        """Why a step on `channel` may not start at `now`: its rules, then the window."""
        reason = self.skip_reason(booking, channel, now)
        if reason is None and not window_open(booking, now):
            return OUTSIDE_WINDOW
        return reason

    def texted_on(self, booking: SessionBooking, day: date) -> bool:
        """Whether a text went out (or may have) on the client's local `day`."""
        zone = booking.client.time_zone
        return any(contact_window.local_date(at, zone) == day for at in self.texted_at)

    def reachable(self, booking: SessionBooking) -> bool:
        """Whether any channel of the ladder could still reach the client."""
        return any(
            channel not in self.unusable and protocol.skip_reason(booking, channel) is None
            and not (channel is Channel.TEXT and self.opted_out_of_text)
            for channel in protocol.outreach_channels(booking)
        )

    def details(self, booking: SessionBooking) -> str:
        """The Web UI's "current details": pseudonymous, no clinical content."""
        lines = [
            f"**{self.status.value}** · client `{booking.client.ref}` · "
            f"{booking.risk_tier.value} risk · therapist `{booking.therapist_id}`",
            f"outreach attempts: {self.attempts} of {booking.protocol.max_attempts}",
        ]
        if self.outcome is not None:
            lines.append(f"outcome: **{self.outcome.value}**")
        elif self.next_action is not None and self.next_action_at is not None:
            when = contact_window.local_label(self.next_action_at, booking.client.time_zone)
            lines.append(f"next: {self.next_action} at {when} (client's time)")
        return "\n\n".join(lines)


def window_open(booking: SessionBooking, now: datetime) -> bool:
    """Whether the client's contact window is open at `now`."""
    return contact_window.is_open(now, booking.client.time_zone, booking.protocol.contact_window)


def window_opens(booking: SessionBooking, now: datetime) -> datetime:
    """When the client's contact window is next open (`now` if it is)."""
    return contact_window.next_allowed(
        now, booking.client.time_zone, booking.protocol.contact_window
    )


def client_today(booking: SessionBooking, now: datetime) -> date:
    """The client's local date at `now`."""
    return contact_window.local_date(now, booking.client.time_zone)


def fold(booking: SessionBooking, trail: Iterable[AuditEvent]) -> SessionFacts:
    """The facts a session's trail (its live rows, in order) records."""
    facts = SessionFacts.booked(booking)
    for event in events.live(list(trail)):
        facts = facts.apply(events.read(event), event.occurred_at)
    return facts
