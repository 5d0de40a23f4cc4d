"""The audit vocabulary: one typed, versioned model per event type.

An audit row is stored as an envelope (`AuditEvent`: session, sequence, type, time) and the
event's details as JSON. The details are written from these models and read back through
them, so a field that is misspelt or missing is an error where it is written, not a hole
found by a reviewer years later.

Rows outlive code. Each row carries the `schema_version` of the model that wrote it (rows
written before versions existed have none and are version 1). When a model changes shape,
its `schema_version` goes up and its `upgrade` learns to turn the previous versions' data
into the current shape, so every old row stays readable by the current code; the stored row
itself is never rewritten (the trail is append-only and hash-chained). A row written by a
newer version than this code knows is refused with an error naming it, rather than
misread.

Details hold only JSON scalars that survive a PostgreSQL `jsonb` round trip unchanged
(strings, integers, booleans, null; no floats), because the hash chain is computed over
them as written and verified over them as read back. Never a phone number, email address or
name: clients and staff appear by their pseudonymous references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from missed_session.domain.models import (
    RENAMED,
    AuditEvent,
    AuditEventType,
    AwareDatetime,
    CallResult,
    CaringOffer,
    Channel,
    DecisionKind,
    EventValue,
    LetterKind,
    Modality,
    Model,
    NoticeKind,
    Outcome,
    Priority,
    ResponseChannel,
    RiskTier,
)

SCHEMA_VERSION_KEY = "schema_version"
"""The key in a row's data that names the version of the model that wrote it."""
FIRST_VERSION = 1
"""What a row without a version was written as (rows from before versions existed)."""


class UnreadableEventError(ValueError):
    """A stored row cannot be read as the event its type names."""


class EventDetails(Model):
    """What one kind of event records, beyond who, when and where in the trail."""

    event_type: ClassVar[AuditEventType]
    """The audit event type these details belong to."""
    schema_version: ClassVar[int] = FIRST_VERSION
    """Raised whenever the model's stored shape changes; `upgrade` reads the older ones."""

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Turn data written by an older `version` of this model into the current shape.

        The first version has nothing older to upgrade; a model that changes overrides
        this, one step per version, so that each old shape has one tested path forward.
        """
        del version
        return data

    def to_data(self) -> dict[str, EventValue]:
        """The row's data: the fields as JSON scalars, and the schema version."""
        fields: dict[str, EventValue] = self.model_dump(mode="json")
        return {SCHEMA_VERSION_KEY: self.schema_version, **fields}


# -- booking and attendance ----------------------------------------------------------------


class Scheduled(EventDetails):
    """The session was booked and its protocol started."""

    event_type = AuditEventType.SCHEDULED
    client_ref: str
    """Pseudonymous client id."""
    therapist_id: str
    """Whose session it is."""
    start: AwareDatetime
    """Start as booked."""
    duration_minutes: int
    """Planned length."""
    modality: Modality
    """In person or telehealth."""
    risk_tier: RiskTier
    """The clinical risk tier, which sets the grace period and escalation rules."""
    grace_period_minutes: int
    """How long a check-in was awaited after the start."""
    protocol: str | None = None
    """The practice protocol that ran (absent in rows from before practice protocols)."""
    protocol_version: str | None = None
    """Its version, so a reviewer can read the rules that applied."""


class Rescheduled(EventDetails):
    """The session moved before it was declared a no-show."""

    event_type = AuditEventType.RESCHEDULED
    previous_start: AwareDatetime
    """The start it had."""
    start: AwareDatetime
    """The start it has now."""
    reason: str = ""
    """Why, as the scheduling system gave it (no clinical detail)."""


class Cancelled(EventDetails):
    """The session will not take place (before it was declared a no-show)."""

    event_type = AuditEventType.CANCELLED
    reason: str = ""
    """Why, as the scheduling system gave it (no clinical detail)."""


class CheckedIn(EventDetails):
    """The client arrived or joined."""

    event_type = AuditEventType.CHECKED_IN
    late: bool
    """After the grace period had expired (during outreach)."""


class GracePeriodExpired(EventDetails):
    """No check-in within the grace period: the session is a no-show."""

    event_type = AuditEventType.GRACE_PERIOD_EXPIRED
    grace_period_minutes: int
    """The grace period that expired."""


class TherapistAlerted(EventDetails):
    """The therapist's inbox has the no-show alert."""

    event_type = AuditEventType.THERAPIST_ALERTED
    notice: str
    """Key of the notice (the therapist's no-show alert)."""


# -- outreach ------------------------------------------------------------------------------


class OutreachAttempted(EventDetails):
    """A call to the client rang; whether it was answered."""

    event_type = AuditEventType.OUTREACH_ATTEMPTED
    attempt: int = Field(ge=1)
    """Which attempt of the ladder."""
    channel: Literal[Channel.CALL] = Channel.CALL
    """Only calls report a result."""
    result: CallResult
    """Answered or not."""
    consent_record: str | None = None
    """The client-directory consent record the step relied on (or that refused it); None
    for a client the directory does not know (the booking's snapshot decided)."""


class VoicemailLeft(EventDetails):
    """The non-identifying voicemail was left."""

    event_type = AuditEventType.VOICEMAIL_LEFT
    attempt: int = Field(ge=1)
    """Which attempt of the ladder."""
    consent_record: str | None = None
    """The client-directory consent record the step relied on (or that refused it); None
    for a client the directory does not know (the booking's snapshot decided)."""


class MessageSent(EventDetails):
    """A text or email went out."""

    event_type = AuditEventType.MESSAGE_SENT
    attempt: int = Field(ge=1)
    """Which attempt of the ladder."""
    channel: Channel
    """Text or email."""
    consent_record: str | None = None
    """The client-directory consent record the step relied on (or that refused it); None
    for a client the directory does not know (the booking's snapshot decided)."""


class OutreachFailed(EventDetails):
    """A channel failed for this attempt (outage after retries, invalid address, refusal)."""

    event_type = AuditEventType.OUTREACH_FAILED
    attempt: int = Field(ge=1)
    """Which attempt of the ladder."""
    channel: Channel
    """The channel that failed."""
    reason: str
    """A short, non-identifying reason."""
    consent_record: str | None = None
    """The client-directory consent record the step relied on (or that refused it); None
    for a client the directory does not know (the booking's snapshot decided)."""


class OutreachSkipped(EventDetails):
    """A channel of the ladder was not used, and why (consent, opt-out, daily limit)."""

    event_type = AuditEventType.OUTREACH_SKIPPED
    attempt: int = Field(ge=1)
    """Which attempt of the ladder."""
    channel: Channel
    """The channel not used."""
    reason: str
    """Why not."""
    consent_record: str | None = None
    """The client-directory consent record the step relied on (or that refused it); None
    for a client the directory does not know (the booking's snapshot decided)."""


class OutreachDeferred(EventDetails):
    """An action waits for the client's contact window to open."""

    event_type = AuditEventType.OUTREACH_DEFERRED
    action: str
    """What waits (an attempt, or escalation)."""
    reason: str
    """Why it waits."""
    until: AwareDatetime
    """When the window opens."""


class ClientResponded(EventDetails):
    """The client (or someone for them) got back in touch."""

    event_type = AuditEventType.CLIENT_RESPONDED
    channel: ResponseChannel
    """How."""
    responder: str
    """`client`, or the role of whoever spoke for them."""
    attempt: int | None = None
    """The attempt whose call was answered, when contact came that way."""
    note: str = ""
    """Staff note or the client's reply text: health data, stored here, never logged."""


class OutreachUncertain(EventDetails):
    """A step that may or may not have reached the client: it is not tried again.

    The provider may have accepted it (a timeout after sending, a dead worker's step), or it
    was stopped in flight by a decision or by contact: either way, recorded as what it is.
    """

    event_type = AuditEventType.OUTREACH_UNCERTAIN
    attempt: int = Field(ge=1)
    """Which attempt of the ladder."""
    channel: Channel
    """The step's channel."""
    reason: str
    """Why it is uncertain (`delivery uncertain`, `stopped in flight: mark_safe`, ...)."""


class AnswerUnclear(EventDetails):
    """An answer that is not clearly the client's: outreach goes on and a person decides.

    Recorded as it came (a call the provider could not tell was answered by a person, a
    reply from someone else, a wrong number), with the therapist's task.
    """

    event_type = AuditEventType.ANSWER_UNCLEAR
    channel: ResponseChannel
    """How the answer came."""
    responder: str
    """Who answered, as reported (`unknown` when the provider could not tell)."""
    why: str
    """Why it does not count as reaching the client."""
    attempt: int | None = None
    """The attempt whose call it answered, when it came that way."""
    note: str = ""
    """The reply text or staff note: health data, stored here, never logged."""
    task: str
    """Key of the therapist's task to decide."""


class OptedOut(EventDetails):
    """The client opted out of a channel (a STOP reply)."""

    event_type = AuditEventType.OPTED_OUT
    channel: Channel
    """The channel opted out of."""


# -- escalation and decisions ---------------------------------------------------------------


class EscalationSent(EventDetails):
    """The emergency contact was called, and on what basis."""

    event_type = AuditEventType.ESCALATION_SENT
    basis: Literal["consent on file", "clinician decision"]
    """Why contacting them was allowed."""
    consent_date: date | None = None
    """When consent was given (basis: consent on file)."""
    legal_basis: str | None = None
    """The legal basis a clinician named (basis: clinician decision)."""
    decided_by: str | None = None
    """The clinician's staff id (basis: clinician decision)."""
    reason: str | None = None
    """The clinician's reason (basis: clinician decision)."""
    consent_on_file: bool | None = None
    """Whether consent would have allowed it anyway (basis: clinician decision)."""
    outside_contact_window: str | None = None
    """If it went outside the client's contact window: on whose authority."""

    @model_validator(mode="after")
    def _decision_is_attributed(self) -> EscalationSent:
        if self.basis == "clinician decision" and not (self.decided_by and self.legal_basis):
            msg = "an escalation on a clinician's decision names the clinician and legal basis"
            raise ValueError(msg)
        return self
    consent_record: str | None = None
    """The client-directory consent record the step relied on (or that refused it); None
    for a client the directory does not know (the booking's snapshot decided)."""


class EscalationBlocked(EventDetails):
    """Escalation could not happen; an urgent task puts the decision with the therapist."""

    event_type = AuditEventType.ESCALATION_BLOCKED
    reason: str
    """Why not (no consent, no contact, contact unreachable)."""
    task: str | None = None
    """Key of the urgent inbox task."""


class EscalationUncertain(EventDetails):
    """The emergency contact's message may or may not have reached them.

    Not `escalation_blocked` (it may well have been delivered) and not `escalation_sent`
    (nobody confirmed it): a later `escalate_now` can try again.
    """

    event_type = AuditEventType.ESCALATION_UNCERTAIN
    basis: Literal["consent on file", "clinician decision"]
    """Why contacting them was allowed."""
    reason: str
    """Why it is uncertain (`delivery uncertain`, `stopped in flight: mark_safe`, ...)."""
    task: str | None = None
    """Key of the urgent inbox task, when a person must confirm."""


class ClinicianDecisionMade(EventDetails):
    """A clinician decided (mark safe, escalate now, stand down) or added a note."""

    event_type = AuditEventType.CLINICIAN_DECISION
    decision: DecisionKind
    """What was decided."""
    clinician_id: str
    """Who decided (staff id)."""
    reason: str
    """Why (the note itself for `add_note`)."""
    legal_basis: str | None = None
    """For `escalate_now`: the legal basis named."""
    authenticated_by: str | None = None
    """How the deciding clinician was authenticated (`ClinicianDecision.authenticated_by`);
    absent from rows written before it existed and for decisions from the CLI."""

    def to_data(self) -> dict[str, EventValue]:
        """As every event's, but an unknown `authenticated_by` is left out, not null.

        The rows of CLI decisions keep the shape rows had before the field existed.
        """
        data = super().to_data()
        if data.get("authenticated_by") is None:
            data.pop("authenticated_by", None)
        return data


# -- follow-up and closing ------------------------------------------------------------------


class PlanCreated(EventDetails):
    """The follow-up plan, in brief (the plan itself is in `follow_up_plans`)."""

    event_type = AuditEventType.PLAN_CREATED
    concerns: str
    """Concern kinds that apply, comma-separated."""
    tasks: str
    """Task kinds for the therapist, comma-separated."""
    no_shows_90_days: int
    """Missed sessions in the review window, this one included."""
    consecutive_no_shows: int
    """Missed in a row, counting back from this one."""


class Closed(EventDetails):
    """The session's one outcome."""

    event_type = AuditEventType.CLOSED
    outcome: Outcome
    """How the session ended."""
    attempts: int
    """Outreach attempts made."""


class AwaitingClinician(EventDetails):
    """Outreach is over and escalation blocked or unclear: the session waits for a person.

    It closes when a clinician decides (escalate_now, mark_safe, stand_down), when the
    client gets back in touch, or at `until` without a decision (`clinician_wait_timed_out`).
    """

    event_type = AuditEventType.AWAITING_CLINICIAN
    awaiting: str
    """What is awaited, and why, in words."""
    until: AwareDatetime
    """When the session closes without a decision."""


class ClinicianWaitTimedOut(EventDetails):
    """No clinician decided within the protocol's wait: the session closes without one."""

    event_type = AuditEventType.CLINICIAN_WAIT_TIMED_OUT
    waited_hours: int
    """The protocol's `clinician_wait_hours`."""
    outcome: Outcome
    """The outcome the session closes with."""


# -- the trail itself ---------------------------------------------------------------------


SUPERSEDED_REASON = (
    "written by a workflow task that did not complete; the session's history took another "
    "course from here"
)


class TrailSuperseded(EventDetails):
    """Rows `first` to `last` were written by work the session's history does not hold.

    A workflow task writes its rows (local activities) before it completes; when it does
    not complete (its worker died, the server restarted) and its retry sees more than it
    did (a call-back arrived meanwhile), the retry may take another branch and build other
    events for the same places. The rows stay (the trail is append-only), this marker says
    they are not the session's course, and the retry's events follow it. Readers of the
    session's course use `live`.
    """

    event_type = AuditEventType.TRAIL_SUPERSEDED
    first: int = Field(ge=1)
    """The first superseded place."""
    last: int = Field(ge=1)
    """The last superseded place (the row before this marker)."""
    reason: str = SUPERSEDED_REASON
    """Why, in words, for a reviewer reading the trail."""


# -- caring contacts (each series' own trail: `caring:<client ref>:<session id>`) -----------


class CaringStarted(EventDetails):
    """A clinician started a caring-contacts series after an unresolved session."""

    event_type = AuditEventType.CARING_STARTED
    client_ref: str
    """Whose series."""
    origin_session_id: str
    """The session whose end it follows."""
    started_by: str
    """The clinician who confirmed it (staff id)."""
    messages: int
    """How many messages the schedule holds."""
    last_day: int
    """The schedule's last day after the start."""


class CaringSent(EventDetails):
    """One caring message went out."""

    event_type = AuditEventType.CARING_SENT
    index: int = Field(ge=0)
    """Which message of the schedule (from 0)."""
    consent_record: str | None = None
    """The text consent it rested on; None: the practice default."""


class CaringSkipped(EventDetails):
    """One caring message was not sent, and why (no consent that day, no mobile number)."""

    event_type = AuditEventType.CARING_SKIPPED
    index: int = Field(ge=0)
    """Which message of the schedule."""
    reason: str
    """Why (no contact details)."""


class CaringEnded(EventDetails):
    """The series ended."""

    event_type = AuditEventType.CARING_ENDED
    reason: str
    """completed, stopped_by_client, attended or clinician."""
    sent: int
    """Messages sent in all."""
    by: str | None = None
    """The clinician who ended it, when one did."""
    note: str = ""
    """The clinician's reason, when one ended it."""


# -- letters (docs/protocol.md, "Letters") ---------------------------------------------------


class LetterPrepared(EventDetails):
    """An outreach step by post: the letter's PDF was prepared, and the practice asked to post it.

    The trail holds where the file is and its digest, never its text or the address.
    """

    event_type = AuditEventType.LETTER_PREPARED
    number: int = Field(ge=1)
    """Which letter of the session."""
    kind: LetterKind
    """First-class or certified."""
    file: str
    """The PDF, relative to the letters folder."""
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the PDF: the file is the one prepared."""
    addressed: bool
    """Whether it carries the client's postal address (else the practice addresses it)."""
    task: str
    """Key of the task to confirm it was posted."""


class CaringOffered(EventDetails):
    """The session closed unresolved for a client at risk: a caring series was offered."""

    event_type = AuditEventType.CARING_OFFERED
    mode: CaringOffer
    """`confirm` (a task to the therapist) or `automatic` (the series was started)."""
    series_id: str
    """The series it offers (or started)."""
    task: str | None = None
    """Key of the therapist's task to accept it, when it waits for one."""


class CaringReplied(EventDetails):
    """The client replied to a caring message; the therapist was given a notice."""

    event_type = AuditEventType.CARING_REPLIED
    note: str = ""
    """The reply text: health data, stored here, never logged or put in the notice."""
    notice: str
    """Key of the therapist's notice."""


def live(trail: Sequence[AuditEvent]) -> list[AuditEvent]:
    """The sessions' course: their trails without superseded rows and the markers saying so.

    Every row stays in the trail and in its hash chain; only what a row means changes. Any
    number of sessions' rows, in any order.
    """
    dropped: set[tuple[str, int]] = set()
    for event in trail:
        if event.event_type is AuditEventType.TRAIL_SUPERSEDED:
            first, last = event.data.get("first"), event.data.get("last")
            if isinstance(first, int) and isinstance(last, int):
                dropped.update((event.session_id, place) for place in range(first, last + 1))
            dropped.add((event.session_id, event.sequence))
    if not dropped:
        return list(trail)
    return [event for event in trail if (event.session_id, event.sequence) not in dropped]


# -- notices to clinicians (each notice's own trail: `<session id>/<name>`) --------------------


class NoticeOpened(EventDetails):
    """A notice workflow started delivering an alert or task to clinicians."""

    event_type = AuditEventType.NOTICE_OPENED
    kind: NoticeKind
    """Alert or task."""
    priority: Priority
    """Routine or urgent."""
    risk_tier: RiskTier
    """The session's risk tier, which chose the policy."""
    therapist_id: str
    """The session's therapist, the first rung."""
    policy: str
    """The notice policy (on-call ladder) that runs."""
    roster_version: int
    """The roster in force when the notice opened."""


class NoticeSent(EventDetails):
    """A notified clinician was sent the notice on one channel."""

    event_type = AuditEventType.NOTICE_SENT
    round: int = Field(ge=1)
    """Which climb of the ladder."""
    step: int = Field(ge=1)
    """Which rung."""
    target: str
    """therapist, on_call or supervisor."""
    clinician_id: str
    """Who (staff id)."""
    channel: str
    """sms, voice, email or pager."""


class NoticeFailed(EventDetails):
    """Sending the notice to a clinician on one channel failed."""

    event_type = AuditEventType.NOTICE_FAILED
    round: int = Field(ge=1)
    """Which climb."""
    step: int = Field(ge=1)
    """Which rung."""
    clinician_id: str
    """Who."""
    channel: str
    """The channel that failed."""
    reason: str
    """A short, non-identifying reason."""


class NoticeUncertain(EventDetails):
    """A send that may have reached the clinician: not re-sent, the rung waits its minutes.

    The provider may have accepted it (a timeout after sending, a dead worker's send found
    pending in the delivery ledger): neither sent nor failed, recorded as what it is.
    """

    event_type = AuditEventType.NOTICE_UNCERTAIN
    round: int = Field(ge=1)
    """Which climb."""
    step: int = Field(ge=1)
    """Which rung."""
    clinician_id: str
    """Who."""
    channel: str
    """The channel used."""
    reason: str
    """Why it is uncertain (`delivery uncertain`)."""


class NoticeSkipped(EventDetails):
    """A rung had nobody to notify (nobody on call, the therapist away): the next follows."""

    event_type = AuditEventType.NOTICE_SKIPPED
    round: int = Field(ge=1)
    """Which climb."""
    step: int = Field(ge=1)
    """Which rung."""
    target: str
    """Who the rung was for."""
    reason: str
    """Why nobody was notified."""


class NoticeClimbed(EventDetails):
    """Nobody acknowledged in time: the notice climbs to the next rung.

    Trails recorded before the rename call it `notice_escalated` (read through `upcast`).
    """

    event_type = AuditEventType.NOTICE_CLIMBED
    round: int = Field(ge=1)
    """The climb it moves to."""
    step: int = Field(ge=1)
    """The rung it moves to."""
    target: str
    """Who that rung notifies."""


class NoticeExhausted(EventDetails):
    """The policy ran out of steps and nobody acknowledged: urgent, visible, still open."""

    event_type = AuditEventType.NOTICE_EXHAUSTED
    policy: str
    """The policy that ran out."""
    rounds: int
    """Climbs made."""
    notified: str
    """Clinicians notified, comma-separated staff ids."""


class NoticeAcknowledged(EventDetails):
    """A clinician acknowledged the notice: the climb stops."""

    event_type = AuditEventType.NOTICE_ACKNOWLEDGED
    clinician_id: str
    """Who."""
    via: str
    """sms, link, cli or http."""
    seconds_to_acknowledge: int = Field(ge=0)
    """From the notice's opening to this acknowledgment."""
    step: int
    """The rung the notice had reached."""


class NoticeResolved(EventDetails):
    """A clinician closed the notice with an outcome."""

    event_type = AuditEventType.NOTICE_RESOLVED
    clinician_id: str
    """Who."""
    via: str
    """How it arrived."""
    outcome: str
    """What was done, briefly."""
    note: str = ""
    """The clinician's note: health data, stored here, never logged."""


# -- the mass no-show brake (missed_session/domain/brake.py) ------------------------------


class BrakeHeld(EventDetails):
    """Many sessions were missed at once: this session's client outreach is on hold.

    The therapist's no-show alert has gone as always; the clients are not contacted until
    the hold is released (by a supervisor, or by itself at `release_after_minutes`).
    """

    event_type = AuditEventType.BRAKE_HELD
    episode: str
    """The brake episode: every session held by one burst of no-shows shares it."""
    no_shows: int = Field(ge=0)
    """Sessions missed in the window when this one was held."""
    due: int = Field(ge=0)
    """Sessions whose grace period passed in the window."""
    window_minutes: int = Field(ge=1)
    """The practice's window."""
    release_after_minutes: int = Field(ge=1)
    """When the hold releases itself if nobody decides (short for a high-risk session)."""
    paged: bool = False
    """Whether this session opened the episode and paged the supervisor (one per episode)."""


class BrakeReleased(EventDetails):
    """The hold is over and outreach proceeds (or outreach had already stopped)."""

    event_type = AuditEventType.BRAKE_RELEASED
    episode: str
    """The brake episode."""
    by: str
    """Who released it: a clinician's id, or `brake` when its limit passed."""
    reason: str
    """Why, in words (no clinical detail)."""


class BrakeStoodDown(EventDetails):
    """A supervisor stood the held session down: no client outreach for it."""

    event_type = AuditEventType.BRAKE_STOOD_DOWN
    episode: str
    """The brake episode."""
    by: str
    """The clinician who decided."""
    reason: str
    """Why, in words (no clinical detail)."""



# -- a person in the loop (issue 26): what the session hears of its notices, and the call ---


class ClinicianAcknowledged(EventDetails):
    """A clinician acknowledged one of the session's notices (its notice workflow said so).

    Recorded in the session's own trail, not only the notice's, because the session may not
    close as final until a person has it: for a high-risk session, or once a notice ran out.
    """

    event_type = AuditEventType.CLINICIAN_ACKNOWLEDGED
    notice: str
    """Key of the notice acknowledged."""
    clinician_id: str
    """Who acknowledged it (staff id)."""


class NoticeRanOut(EventDetails):
    """One of the session's notices ran out of steps with nobody acknowledging it.

    The session then does not close as final: it awaits a clinician, and the ladder climbs
    again (`notice_renewed`) after the policy's minutes.
    """

    event_type = AuditEventType.NOTICE_RAN_OUT
    notice: str
    """Key of the notice that ran out."""
    again_after_minutes: int = Field(ge=1)
    """The policy's minutes (its first rung's) before a fresh notice climbs the ladder again."""


class NoticeRenewed(EventDetails):
    """Nobody acknowledged: a fresh notice climbs the on-call ladder from its first rung."""

    event_type = AuditEventType.NOTICE_RENEWED
    notice: str
    """Key of the fresh notice (an urgent task)."""
    round: int = Field(ge=1)
    """Which fresh round this is for the session."""


class EmergencyContactCalled(EventDetails):
    """What the call to the emergency contact came to, whatever escalation then records.

    `escalation_sent`/`_blocked`/`_uncertain` say what it means for escalation; this says
    what the phone said, so the session page can tell a clinician "called at 08:14: no
    answer". A contact not reached leaves the session awaiting a clinician.
    """

    event_type = AuditEventType.EMERGENCY_CONTACT_CALLED
    result: Literal["answered", "no_answer", "answered_unknown", "failed", "uncertain",
                    "stopped"]
    """answered: the provider confirmed the message was heard or recorded (by voice or on
    their voicemail; it cannot tell which); no_answer: it was not delivered;
    answered_unknown: something picked up, not clearly a person (perhaps a voicemail
    greeting); failed: the call did not go through; uncertain: it may have been placed;
    stopped: cancelled in flight by a decision or contact."""
    reason: str = ""
    """The provider's reason, for failed, uncertain and stopped (no contact details)."""
    basis: Literal["consent on file", "clinician decision"]
    """On what the call was made."""
class NoticeReasonEnded(EventDetails):
    """The session's reason for the notice ended: resolved without a person, climb stopped.

    Those the ladder already told each get one short "resolved" message
    (`notice_resolution_sent`); nobody acknowledges it any more.
    """

    event_type = AuditEventType.NOTICE_REASON_ENDED
    reason: str
    """What ended it, in words (`domain.notices.EndReason`: the client checked in late...)."""
    told: str
    """Whom it tells that it is resolved: comma-separated staff ids (empty: nobody yet)."""


class NoticeResolutionSent(EventDetails):
    """The "resolved" message to one clinician the notice had told, on the route it used."""

    event_type = AuditEventType.NOTICE_RESOLUTION_SENT
    clinician_id: str
    """Who."""
    channel: str
    """sms, voice, email or pager: how the notice reached them."""
    result: Literal["sent", "failed", "uncertain"]
    """Whether it went (uncertain: the provider may have taken it; never re-sent)."""
    reason: str = ""
    """Why it failed or is uncertain (short, non-identifying)."""
# -- one person, one ladder (`workflows.person`) ---------------------------------------------


class JoinedOutreach(EventDetails):
    """The no-show joined the outreach already running for the same person."""

    event_type = AuditEventType.JOINED_OUTREACH
    leader: str
    """The session whose ladder reaches out (its trail records `outreach_joined`)."""
    rule: str
    """The practice's rule: `join` (one ladder) or `space` (one ladder at a time)."""


class OutreachJoined(EventDetails):
    """Another no-show of the same person joined this session's outreach."""

    event_type = AuditEventType.OUTREACH_JOINED
    joiner: str
    """The session that joined (its trail records `joined_outreach`)."""


class JoinedOutreachEnded(EventDetails):
    """The outreach this session joined has ended (or could not be followed)."""

    event_type = AuditEventType.JOINED_OUTREACH_ENDED
    leader: str
    """The session whose ladder it was."""
    outcome: Outcome | None
    """How that outreach ended; None when the leader ended without telling."""
    own_ladder: bool
    """Whether this session now runs its own ladder."""
    reason: str
    """Why, in one line."""


_CURRENT: Mapping[AuditEventType, type[EventDetails]] = {
    model.event_type: model
    for model in (
        Scheduled, Rescheduled, Cancelled, CheckedIn, GracePeriodExpired, TherapistAlerted,
        OutreachAttempted, VoicemailLeft, MessageSent, OutreachFailed, OutreachSkipped,
        OutreachDeferred, OutreachUncertain, ClientResponded, AnswerUnclear, OptedOut,
        EscalationSent, EscalationBlocked, EscalationUncertain, ClinicianDecisionMade,
        PlanCreated, Closed, AwaitingClinician, ClinicianWaitTimedOut, TrailSuperseded,
        NoticeOpened, NoticeSent, NoticeFailed, NoticeSkipped,
        NoticeClimbed, NoticeExhausted, NoticeAcknowledged, NoticeResolved, NoticeUncertain,
        CaringStarted, CaringSent, CaringSkipped, CaringEnded,
        BrakeHeld, BrakeReleased, BrakeStoodDown,
        ClinicianAcknowledged, NoticeRanOut, NoticeRenewed, EmergencyContactCalled,
        LetterPrepared, CaringOffered, CaringReplied,
        NoticeReasonEnded, NoticeResolutionSent,
        JoinedOutreach, OutreachJoined, JoinedOutreachEnded,
    )
}
VOCABULARY: Mapping[AuditEventType, type[EventDetails]] = {
    **_CURRENT, **{old: _CURRENT[new] for old, new in RENAMED.items()},
}
"""Every event type's model, renamed ones under both names: `tests/test_events.py` checks
that none is missing."""


def new_event(*, session_id: str, sequence: int, occurred_at: datetime,
              details: EventDetails) -> AuditEvent:
    """The audit row for `details`, at its place in the session's trail."""
    return AuditEvent(
        session_id=session_id,
        sequence=sequence,
        event_type=details.event_type,
        occurred_at=occurred_at,
        data=details.to_data(),
    )


def read(event: AuditEvent) -> EventDetails:
    """The typed details of a stored row, upgraded from whatever version wrote it."""
    model = VOCABULARY[event.event_type]
    data = dict(event.data)
    version = data.pop(SCHEMA_VERSION_KEY, FIRST_VERSION)
    where = f"audit event {event.session_id}#{event.sequence} ({event.event_type.value})"
    if not isinstance(version, int) or isinstance(version, bool) or version < FIRST_VERSION:
        msg = f"{where}: schema_version {version!r} is not a version number"
        raise UnreadableEventError(msg)
    if version > model.schema_version:
        msg = (f"{where} was written by schema version {version}; this code reads up to "
               f"version {model.schema_version}: upgrade the code before reading it")
        raise UnreadableEventError(msg)
    try:
        return model.model_validate(model.upgrade(data, version))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'data'}: {problem['msg']}"
            for problem in error.errors()
        )
        msg = f"{where} does not match its schema version {version}: {problems}"
        raise UnreadableEventError(msg) from None
