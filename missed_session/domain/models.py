"""The session vocabulary as pydantic models.

Every model here crosses a boundary (CLI, HTTP, Temporal payloads, PostgreSQL), so each
is validated on the way in and carries a docstring per field. Validation here must not
depend on the clock: the workflow deserialises its input again on every replay, long after
the booking was made. Clock-dependent rules live in :mod:`missed_session.domain.intake`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_TIME_ZONE_LENGTH = 64
"""The longest IANA zone name is 32 characters; a longer one is refused before any lookup."""
SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _e164(value: str) -> str:
    if not E164.fullmatch(value):
        msg = "must be an E.164 phone number such as +14155550123"
        raise ValueError(msg)
    return value


def _time_zone(value: str) -> str:
    if len(value) > MAX_TIME_ZONE_LENGTH:
        msg = f"unknown IANA time zone (longer than {MAX_TIME_ZONE_LENGTH} characters)"
        raise ValueError(msg)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name no file can have
        msg = f"unknown IANA time zone {value!r}"
        raise ValueError(msg) from None
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        msg = "must include a UTC offset or time zone"
        raise ValueError(msg)
    return value


def _session_id(value: str) -> str:
    if not SESSION_ID.fullmatch(value):
        msg = "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        raise ValueError(msg)
    return value


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Embeddings, overrides and isolates: they make text read differently from what it holds."""


def _unreadable(value: str, allowed: str) -> str | None:
    """The first character of `value` that is not readable text (and not in `allowed`)."""
    for char in value:
        if char in allowed:
            continue
        # Cc: C0/C1 controls and DEL (NUL cannot be stored by PostgreSQL at all); Cs: a lone
        # surrogate (not encodable as UTF-8).
        if unicodedata.category(char) in {"Cc", "Cs"} or char in _BIDI_CONTROLS:
            return char
    return None


def _refuse_unreadable(value: str, allowed: str, what: str) -> str:
    bad = _unreadable(value, allowed)
    if bad is not None:
        msg = (f"contains the control character U+{ord(bad):04X} at position "
               f"{value.index(bad) + 1}; {what}")
        raise ValueError(msg)
    return value


def _text(value: str) -> str:
    return _refuse_unreadable(value, "\n\r\t", "only printable text, newlines and tabs are "
                              "accepted")


def _line(value: str) -> str:
    return _refuse_unreadable(value, "", "only printable text on one line is accepted")


FreeText = Annotated[str, AfterValidator(_text)]
"""Text people write (notes, reasons, message bodies): printable characters, newlines and
tabs. Refused at intake otherwise, so that nothing PostgreSQL cannot store (NUL) or a
reader would misread (escape sequences, bidi overrides) reaches a message or the trail."""
TextLine = Annotated[str, AfterValidator(_line)]
"""One line of free text (names, who responded, staff ids): `FreeText` without newlines
or tabs."""
PhoneNumber = Annotated[str, AfterValidator(_e164)]
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
SessionId = Annotated[str, AfterValidator(_session_id)]


class Model(BaseModel):
    """Base for every boundary model: immutable, and strict about unknown fields.

    Unknown fields are refused so that a typo in a scheduling system's payload is an error
    naming the field, not a silently ignored setting.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


class Modality(StrEnum):
    """How the session is held."""

    IN_PERSON = "in_person"
    TELEHEALTH = "telehealth"


class RiskTier(StrEnum):
    """The clinician's current risk assessment; it shortens the protocol as it rises."""

    STANDARD = "standard"
    ELEVATED = "elevated"
    HIGH = "high"


class Outcome(StrEnum):
    """How a session closed. Exactly one per session."""

    ATTENDED = "attended"
    ATTENDED_LATE = "attended_late"
    CANCELLED = "cancelled"
    REACHED = "reached"
    UNREACHABLE_ESCALATED = "unreachable_escalated"
    UNREACHABLE_ESCALATION_BLOCKED = "unreachable_escalation_blocked"
    MARKED_SAFE = "marked_safe"
    STOOD_DOWN = "stood_down"

    @property
    def is_no_show(self) -> bool:
        """Whether the client missed the session (came late counts as attended)."""
        return self not in {Outcome.ATTENDED, Outcome.ATTENDED_LATE, Outcome.CANCELLED}


class SessionStatus(StrEnum):
    """Where a session is in the protocol; the `state` query reports it."""

    SCHEDULED = "scheduled"
    WAITING = "waiting"
    NO_SHOW = "no_show"
    HELD = "held"
    """Many sessions were missed at once: the mass no-show brake holds client outreach
    until a supervisor releases it (or its limit passes, short for high risk)."""
    OUTREACH = "outreach"
    ESCALATION = "escalation"
    AWAITING_CLINICIAN = "awaiting_clinician"
    """Outreach is over, the client unreached, and escalation blocked or unclear: the
    session waits (at most the protocol's `clinician_wait_hours`) for a clinician's
    escalate_now, mark_safe or stand_down before it closes."""
    FOLLOW_UP = "follow_up"
    CLOSED = "closed"
    FAILED = "failed"
    """The audit trail refused an event (a retried workflow task took another branch, or
    an event PostgreSQL cannot store): the workflow stopped and the therapist has an urgent
    task to take the protocol over by hand."""


class Channel(StrEnum):
    """A way of reaching the client; each needs the client's consent."""

    CALL = "call"
    VOICEMAIL = "voicemail"
    TEXT = "text"
    EMAIL = "email"


class LetterKind(StrEnum):
    """How a letter to the client is posted (the service prepares it; the practice posts it)."""

    FIRST_CLASS = "first_class"
    CERTIFIED = "certified"


class CaringOffer(StrEnum):
    """Whether an unresolved end for a client at risk offers a caring-contacts series."""

    OFF = "off"
    """Never offered (a therapist may still start one)."""
    CONFIRM = "confirm"
    """A task to the therapist, whose acceptance starts the series."""
    AUTOMATIC = "automatic"
    """The session starts the series itself as it closes."""
class SamePerson(StrEnum):
    """What a no-show does while the same person's outreach already runs for another session.

    Whichever the rule, the person is never called twice within the attempt spacing.
    """

    JOIN = "join"
    """One ladder: the second session joins the running one and takes its outcome."""
    SPACE = "space"
    """One ladder at a time: the second session's own ladder starts only once the running
    one has ended without reaching the client, and an attempt spacing after it."""


class ConsentScope(StrEnum):
    """When the client agreed that their emergency contact may be reached."""

    UNREACHABLE = "unreachable"
    """Whenever the client cannot be reached after a missed session."""
    SAFETY_CONCERN = "safety_concern"
    """Only while the client's risk tier is elevated or high."""


class EmergencyContact(Model):
    """The person to contact when the client cannot be reached."""

    name: TextLine = Field(min_length=1, max_length=100)
    """How the practice addresses the emergency contact."""
    phone: PhoneNumber
    """E.164 number the escalation call goes to."""
    consent: bool = False
    """Whether the client consented to this contact being reached."""
    consent_date: date | None = None
    """When consent was recorded; required when consent is given."""
    consent_scope: ConsentScope = ConsentScope.UNREACHABLE
    """When the consent applies; bookings made before scopes existed mean `unreachable`."""

    @model_validator(mode="after")
    def _consent_is_dated(self) -> EmergencyContact:
        if self.consent and self.consent_date is None:
            msg = "consent_date is required when consent is true"
            raise ValueError(msg)
        return self


class ContactPreferences(Model):
    """The client's consent per channel, and the channel they prefer.

    The defaults are what every booking meant before per-channel consent existed: the
    client agreed to be called and to have a voicemail left; texts and email need an
    explicit yes.
    """

    call: bool = True
    """Consent to be called."""
    voicemail: bool = True
    """Consent to a voicemail being left."""
    text: bool = False
    """Consent to automated texts."""
    email: bool = False
    """Consent to email."""
    preferred: Channel | None = None
    """The channel the client prefers; tried first in each attempt. Must be consented."""

    @model_validator(mode="after")
    def _preferred_is_consented(self) -> ContactPreferences:
        if self.preferred is not None and not self.allows(self.preferred):
            msg = f"preferred channel {self.preferred.value!r} has no consent"
            raise ValueError(msg)
        return self

    def allows(self, channel: Channel) -> bool:
        """Whether the client consented to `channel`."""
        allowed: bool = getattr(self, channel.value)
        return allowed


class Client(Model):
    """The person expected at the session. Only `ref` ever appears in logs."""

    ref: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Pseudonymous id: safe to log and to show in the Web UI."""
    first_name: TextLine = Field(min_length=1, max_length=50)
    """The only part of the name outreach ever uses."""
    phone: PhoneNumber | None = None
    """E.164 number for calls, voicemail and texts; None for a client reached by email only.

    Optional because the protocol has an email channel: a client without a phone is still
    a client the practice must be able to book and reach. The ladder skips the phone
    channels for them, recording why (`protocol.skip_reason`)."""
    landline: bool = False
    """The number is a landline: it takes calls and voicemail, never texts."""
    email: EmailStr | None = None
    """Address for email outreach, if the client gave one."""
    time_zone: TimeZoneName
    """IANA time zone the client lives in, for contact hours."""
    emergency_contact: EmergencyContact | None = None
    """Emergency contact on file, if any."""
    preferences: ContactPreferences = ContactPreferences()
    """Consent per channel and the preferred channel."""

    @model_validator(mode="after")
    def _reachable_and_contact_is_someone_else(self) -> Client:
        # A client with no way to be reached cannot be carried through a protocol whose
        # every step reaches out: refused at booking, naming the field a scheduler fills.
        if self.phone is None and self.email is None:
            msg = ("phone: the client has no phone number and no email address; "
                   "outreach needs at least one")
            raise ValueError(msg)
        if self.phone is None and self.landline:
            msg = "landline: there is no phone number to be a landline"
            raise ValueError(msg)
        # A contact on the client's own number would tell the client "you are listed as a
        # contact for ..." and the trail would call it an escalation.
        if self.emergency_contact is not None and self.emergency_contact.phone == self.phone:
            msg = "emergency_contact.phone: is the client's own number"
            raise ValueError(msg)
        return self

    @property
    def phone_channels(self) -> frozenset[Channel]:
        """The channels the client's phone (if any) can carry."""
        if self.phone is None:
            return frozenset()
        if self.landline:
            return frozenset({Channel.CALL, Channel.VOICEMAIL})
        return frozenset({Channel.CALL, Channel.VOICEMAIL, Channel.TEXT})


class ClientRef(Model):
    """A client named only by ref: the client directory supplies the rest at booking."""

    ref: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Pseudonymous id of a client the directory holds."""


class ContactWindow(Model):
    """Local hours in which the client may be contacted, in the client's own time zone."""

    start: time = time(8, 0)
    """Earliest local time for outreach (inclusive)."""
    end: time = time(21, 0)
    """Latest local time for outreach (exclusive); after `start`, same day."""

    @model_validator(mode="after")
    def _start_before_end(self) -> ContactWindow:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            msg = "contact window times are local wall-clock times, without an offset"
            raise ValueError(msg)
        if self.start >= self.end:
            msg = "contact window start must be before its end (same day)"
            raise ValueError(msg)
        return self


class EscalationAfterAttempt(Model):
    """After which failed outreach attempt the emergency contact is considered, per risk tier.

    None means after the last attempt. A careful therapist does not wait out the whole
    ladder for a high-risk client: by default, high risk escalates after the first.
    """

    standard: int | None = Field(default=None, ge=1, le=10)
    """For standard risk."""
    elevated: int | None = Field(default=None, ge=1, le=10)
    """For elevated risk."""
    high: int | None = Field(default=1, ge=1, le=10)
    """For high risk."""


class ProtocolSettings(Model):
    """The protocol's timings, in real minutes.

    `time_scale` compresses every duration for demos and end-to-end tests only; the rules
    and their validation always speak in real minutes.
    """

    grace_period_minutes: int = Field(default=15, ge=5, le=30)
    """How long to wait for a check-in after the start."""
    high_risk_grace_period_minutes: int = Field(default=10, ge=5, le=30)
    """Grace period for high-risk clients; never longer than the standard one."""
    attempt_spacing_minutes: int = Field(default=15, ge=5, le=240)
    """Wait between outreach attempts."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Outreach attempts before the client counts as unreachable."""
    time_scale: float = Field(default=1.0, ge=1.0, le=3600.0)
    """Divides every protocol duration (60 turns minutes into seconds). Demo/test only.

    It never moves the contact window: that is judged on the real clock in the client's
    time zone, compressed or not (see docs/protocol.md).
    """
    channels: tuple[Channel, ...] = Field(default=(Channel.CALL, Channel.VOICEMAIL), min_length=1)
    """The steps of one outreach attempt, in order; each used only with consent."""
    contact_window: ContactWindow = ContactWindow()
    """When outreach may happen, in the client's local time."""
    high_risk_escalation_outside_window: bool = False
    """Whether escalation for a high-risk client may happen outside the contact window."""
    escalate_after: EscalationAfterAttempt = EscalationAfterAttempt()
    """When to consider escalation, per risk tier."""
    same_person: SamePerson = SamePerson.JOIN
    """A second no-show while the same person (client ref or phone number) is already in
    outreach: join that ladder, or space the ladders (`SamePerson`)."""
    clinician_wait_hours: int = Field(default=24, ge=1, le=168)
    """How long a session whose escalation is blocked or unclear waits, once outreach is
    over, for a clinician's decision before it closes without one (recorded as timed out)."""
    no_show_brake: bool = False
    """Whether the session asks the practice's mass no-show brake at its no-show: set at
    intake when the practice file has a `[brake]` table, so that a practice without one
    pays nothing for it (not even the question) and its histories stay as they were."""
    letters: tuple[LetterKind, ...] = Field(default=(), max_length=4)
    """Letters prepared, in order, when outreach ends without reaching the client (the
    insurer's ladder: `["first_class", "certified"]`); none by default."""
    letter_spacing_days: int = Field(default=7, ge=0, le=60)
    """Days between one letter and the next (for the post to arrive and an answer to come)."""
    caring_offer: CaringOffer = CaringOffer.OFF
    """Whether a session that closes unresolved for a client at risk (elevated or high)
    offers a caring-contacts series; a practice file sets it as `[caring_contacts] offer`."""
    name: str = Field(default="default", min_length=1, max_length=64)
    """The practice protocol these settings were resolved from."""
    version: str = Field(default="builtin", min_length=1, max_length=64)
    """Version of the practice file they came from (recorded in the audit trail)."""

    @model_validator(mode="after")
    def _high_risk_not_longer(self) -> ProtocolSettings:
        if self.high_risk_grace_period_minutes > self.grace_period_minutes:
            msg = "high_risk_grace_period_minutes must not exceed grace_period_minutes"
            raise ValueError(msg)
        if len(set(self.channels)) != len(self.channels):
            msg = "channels must not repeat a channel"
            raise ValueError(msg)
        return self

    def scaled(self, minutes: float) -> timedelta:
        """Turn protocol minutes into the duration the workflow really waits."""
        return timedelta(minutes=minutes) / self.time_scale


class SessionBooking(Model):
    """The one input of a session workflow, as the scheduling system books it."""

    session_id: SessionId
    """The scheduling system's id; the workflow id is `session-<session_id>`."""
    client: Client
    """Who is expected."""
    therapist_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Who holds the session and receives alerts and tasks."""
    start: AwareDatetime
    """When the session starts (timezone-aware)."""
    duration_minutes: int = Field(default=50, ge=10, le=240)
    """Planned length of the session."""
    modality: Modality = Modality.IN_PERSON
    """In person or telehealth."""
    risk_tier: RiskTier = RiskTier.STANDARD
    """Current risk assessment."""
    protocol: ProtocolSettings = ProtocolSettings()
    """Timings of the missed-session protocol for this session."""
    session_time_zone: TimeZoneName | None = None
    """IANA time zone the session is held in (the practice's), if the scheduler says."""

    @property
    def workflow_id(self) -> str:
        """The durable identity of this session in Temporal."""
        return workflow_id_for(self.session_id)


def workflow_id_for(session_id: str) -> str:
    """Map a session id to its workflow id; one place so CLI and API agree."""
    return f"session-{session_id}"


class CheckIn(Model):
    """The client arrived (front desk) or joined (telehealth)."""

    at: AwareDatetime | None = None
    """When, if the caller knows; the workflow's clock otherwise."""


class Reschedule(Model):
    """The session moves to a new start."""

    start: AwareDatetime
    """The new start."""
    reason: FreeText = Field(default="", max_length=200)
    """Why, for the audit trail (no clinical detail)."""


class Cancellation(Model):
    """The session will not take place."""

    reason: FreeText = Field(default="", max_length=200)
    """Why, for the audit trail (no clinical detail)."""


class ResponseChannel(StrEnum):
    """How the client got back to the practice."""

    CALL = "call"
    TEXT = "text"
    EMAIL = "email"
    IN_PERSON = "in_person"
    OTHER = "other"


class ClientResponse(Model):
    """The client (or someone for them) got back in touch during outreach."""

    channel: ResponseChannel
    """How they responded."""
    responder: TextLine = Field(default="client", min_length=1, max_length=50)
    """Who responded: `client`, or the role of whoever spoke for them."""
    note: FreeText = Field(default="", max_length=2000)
    """Staff note; stored in the audit trail, never logged."""


class TextReply(Model):
    """A text the client sent back (delivered by the text channel's inbound hook)."""

    body: FreeText = Field(max_length=1600)
    """What the client wrote; a STOP keyword is an opt-out. Stored in the audit, never logged."""


class DecisionKind(StrEnum):
    """What a clinician can decide while the protocol runs (each a workflow update)."""

    MARK_SAFE = "mark_safe"
    ESCALATE_NOW = "escalate_now"
    STAND_DOWN = "stand_down"
    ADD_NOTE = "add_note"


class ClinicianDecision(Model):
    """A clinician's decision about a session, recorded in the audit trail.

    Fields are checked by the update's validator (not here), so that a missing reason is a
    rejected update with a message, not an undecodable payload.
    """

    clinician_id: TextLine = Field(default="", max_length=64)
    """Who decided (staff id, not a name)."""
    reason: FreeText = Field(default="", max_length=500)
    """Why; required for every decision (the note itself for `add_note`)."""
    legal_basis: FreeText = Field(default="", max_length=200)
    """For `escalate_now`: the legal basis for contacting without or beyond consent."""
    authenticated_by: TextLine | None = Field(default=None, max_length=200)
    """How the service authenticated `clinician_id`, set by the entry point, never by the
    caller: `api-token:tok-<digest prefix>`, `console-session:<session ref>` or
    `oidc:<subject>@<issuer>`; None for a decision from the CLI (whoever runs it names
    the clinician) or from before this field existed."""


class CallResult(StrEnum):
    """What happened when the phone rang."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    ANSWERED_UNKNOWN = "answered_unknown"
    """Someone or something picked up, and the provider could not tell a person from a
    machine (Twilio's `answered_by=unknown`): not clearly the client."""


class OutreachRequest(Model):
    """One outreach step; the idempotency key makes retries safe."""

    idempotency_key: str
    """`<workflow id>/attempt-<n>/<step>`: the same key never reaches the client twice."""
    session_id: str
    """The session this outreach is for."""
    client: Client
    """Who to reach."""
    ladder_since: AwareDatetime | None = None
    """Set on a session's first step: ask, before anything is sent, whether a session of
    the same person whose no-show came before this instant (this session's own) is in
    outreach; if one is, the step is not taken (`LADDER_RUNNING`). Asked here rather than
    before the step, so a burst of no-shows pays no extra round before its first calls."""


class EscalationRequest(Model):
    """A call to the emergency contact, minimum necessary content."""

    idempotency_key: str
    """`<workflow id>/escalation`."""
    session_id: str
    """The session this escalation is for."""
    client_ref: str
    """Pseudonymous id of the client."""
    client_first_name: str
    """The only detail of the client the emergency contact hears."""
    contact: EmergencyContact
    """Who is called (the booking's; the directory's current one for a client it knows)."""
    risk_tier: RiskTier = RiskTier.STANDARD
    """The session's risk tier: which consent scopes cover the call."""
    clinician_override: bool = False
    """A clinician's escalate_now (with a legal basis) decided the call, not consent."""


class TextCheck(Model):
    """Ask whether the client may get an automated text today, across all their sessions."""

    client_ref: str
    """Whose texts."""
    day_start: AwareDatetime
    """Start of the client's local day."""
    day_end: AwareDatetime
    """Start of the next local day."""


class NoticeKind(StrEnum):
    """A notice's kind: an alert (read it) or a task (do it). Stored values, never renamed."""

    ALERT = "alert"
    TASK = "task"


class Priority(StrEnum):
    """How soon the therapist should act."""

    ROUTINE = "routine"
    URGENT = "urgent"


class TherapistNotice(Model):
    """An alert or task for the therapist; one per key, however often it is retried."""

    key: str
    """Idempotency key, e.g. `session-42/no-show-alert`."""
    session_id: str
    """The session it concerns."""
    therapist_id: str
    """Whose inbox."""
    kind: NoticeKind
    """Alert (read) or task (do)."""
    priority: Priority
    """Routine or urgent."""
    title: str
    """One line the therapist reads first (pseudonymous: client ref, not name)."""


class AuditEventType(StrEnum):
    """Everything that happens to a session, in the words of the audit trail."""

    SCHEDULED = "scheduled"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"
    GRACE_PERIOD_EXPIRED = "grace_period_expired"
    THERAPIST_ALERTED = "therapist_alerted"
    OUTREACH_ATTEMPTED = "outreach_attempted"
    VOICEMAIL_LEFT = "voicemail_left"
    OUTREACH_FAILED = "outreach_failed"
    CLIENT_RESPONDED = "client_responded"
    ESCALATION_SENT = "escalation_sent"
    ESCALATION_BLOCKED = "escalation_blocked"
    OUTREACH_DEFERRED = "outreach_deferred"
    OUTREACH_SKIPPED = "outreach_skipped"
    MESSAGE_SENT = "message_sent"
    OPTED_OUT = "opted_out"
    OUTREACH_UNCERTAIN = "outreach_uncertain"
    ANSWER_UNCLEAR = "answer_unclear"
    ESCALATION_UNCERTAIN = "escalation_uncertain"
    CLINICIAN_DECISION = "clinician_decision"
    PLAN_CREATED = "plan_created"
    CLOSED = "closed"
    AWAITING_CLINICIAN = "awaiting_clinician"
    CLINICIAN_WAIT_TIMED_OUT = "clinician_wait_timed_out"
    TRAIL_SUPERSEDED = "trail_superseded"
    NOTICE_OPENED = "notice_opened"
    NOTICE_SENT = "notice_sent"
    NOTICE_FAILED = "notice_failed"
    NOTICE_SKIPPED = "notice_skipped"
    NOTICE_CLIMBED = "notice_climbed"
    NOTICE_ESCALATED = "notice_escalated"
    """Read only: trails recorded before the glossary's "climbs" name a climb so. Rows are
    never rewritten (the hash chain covers their bytes); `upcast` reads it as NOTICE_CLIMBED,
    and this code writes it only when a retried activity replays an input recorded before."""
    NOTICE_EXHAUSTED = "notice_exhausted"
    NOTICE_ACKNOWLEDGED = "notice_acknowledged"
    NOTICE_RESOLVED = "notice_resolved"
    NOTICE_UNCERTAIN = "notice_uncertain"
    CARING_STARTED = "caring_started"
    CARING_SENT = "caring_sent"
    CARING_SKIPPED = "caring_skipped"
    CARING_ENDED = "caring_ended"
    BRAKE_HELD = "brake_held"
    BRAKE_RELEASED = "brake_released"
    BRAKE_STOOD_DOWN = "brake_stood_down"
    CLINICIAN_ACKNOWLEDGED = "clinician_acknowledged"
    NOTICE_RAN_OUT = "notice_ran_out"
    NOTICE_RENEWED = "notice_renewed"
    EMERGENCY_CONTACT_CALLED = "emergency_contact_called"
    LETTER_PREPARED = "letter_prepared"
    CARING_OFFERED = "caring_offered"
    CARING_REPLIED = "caring_replied"
    NOTICE_REASON_ENDED = "notice_reason_ended"
    NOTICE_RESOLUTION_SENT = "notice_resolution_sent"
    JOINED_OUTREACH = "joined_outreach"
    OUTREACH_JOINED = "outreach_joined"
    JOINED_OUTREACH_ENDED = "joined_outreach_ended"


RENAMED: Mapping[AuditEventType, AuditEventType] = {
    AuditEventType.NOTICE_ESCALATED: AuditEventType.NOTICE_CLIMBED,
}
"""Event types renamed since rows were first stored: old name -> the name readers use."""


def upcast(event_type: AuditEventType) -> AuditEventType:
    """The event type as this code names it, whatever name the stored row carries."""
    return RENAMED.get(event_type, event_type)


def upcast_name(event_type: str) -> str:
    """`upcast` for a stored row's raw `event_type` text (unknown names pass through)."""
    try:
        return upcast(AuditEventType(event_type)).value
    except ValueError:
        return event_type


EventValue = StrictStr | StrictInt | StrictBool | None
"""A value in an audit event's details: what survives a `jsonb` round trip unchanged, so the
hash chain computed on writing is the one verified on reading (no floats)."""


class AuditEvent(Model):
    """One row of a session's append-only audit history.

    `(session_id, sequence)` is the primary key: the workflow numbers its own events, so a
    retried append is recognised as the same event rather than written twice.
    """

    session_id: str
    """The session the event belongs to."""
    sequence: int = Field(ge=1)
    """Position in the session's trail, gap-free from 1."""
    event_type: AuditEventType
    """What happened."""
    occurred_at: AwareDatetime
    """When it happened, on the workflow's clock."""
    data: dict[str, EventValue] = Field(default_factory=dict)
    """Details of the event, written and read through its model in
    `missed_session.domain.events`: never a phone number or email address."""


class AttendanceSummary(Model):
    """The client's recent attendance, including the session being planned for."""

    window_days: int
    """How far back the review looked."""
    sessions: int
    """Sessions in the window, this one included."""
    no_shows: int
    """Missed sessions in the window, this one included when missed."""
    consecutive_no_shows: int
    """Missed sessions in a row, counting back from this one."""
    late_arrivals: int
    """Sessions attended late in the window."""
    same_slot_no_shows: int = 0
    """Missed sessions in the window on this session's weekday and hour (client's local
    time), this one included when missed; 0 in plans made before it was counted."""
    slot: str | None = None
    """That weekday and hour in words, e.g. `Tuesdays at 09:00`."""


class ConcernKind(StrEnum):
    """The clinical lenses a follow-up plan considers."""

    SAFETY = "safety"
    ENGAGEMENT_MOTIVATION = "engagement_motivation"
    CONTINUITY_OF_CARE = "continuity_of_care"
    LOGISTICAL = "logistical"
    RELATIONAL = "relational"


class Concern(Model):
    """One concern that applies, with the evidence behind it."""

    kind: ConcernKind
    """Which lens."""
    reason: str
    """Why it applies, in words a supervisor can check against the record."""


class TaskKind(StrEnum):
    """What the therapist is asked to do after a missed session."""

    DISCUSS_AT_NEXT_SESSION = "discuss_at_next_session"
    REBOOK = "rebook"
    REVIEW_REMINDERS = "review_reminders"
    SAFETY_CHECK = "safety_check"
    SUPERVISOR_REVIEW = "supervisor_review"


class FollowUpTask(Model):
    """One task of the follow-up plan."""

    kind: TaskKind
    """What to do."""
    priority: Priority
    """How soon."""
    description: str
    """What the therapist reads."""


class FollowUpPlan(Model):
    """The plan agreed after a missed session: concerns and the tasks that follow."""

    attendance: AttendanceSummary
    """The evidence the plan is based on."""
    concerns: tuple[Concern, ...]
    """Concerns that apply, each with its reason."""
    tasks: tuple[FollowUpTask, ...]
    """Tasks for the therapist."""
    related_sessions: tuple[str, ...] = ()
    """Other sessions of the same person that shared this session's outreach ladder."""


class FollowUpRequest(Model):
    """Input of the follow-up planning activity."""

    session_id: str
    """The missed session."""
    client_ref: str
    """Whose attendance to review."""
    therapist_id: str
    """Who receives the tasks."""
    risk_tier: RiskTier
    """Risk at the time of the session."""
    outcome: Outcome
    """How the outreach ended (the session's outcome-to-be)."""
    session_start: AwareDatetime
    """Start of the missed session; the review window ends here."""
    escalated: bool
    """Whether the emergency contact was contacted."""
    client_time_zone: str | None = None
    """The client's IANA time zone."""
    session_time_zone: str | None = None
    """The session's IANA time zone, when the booking gave one."""
    reschedules: int = 0
    """How often this session was rescheduled before it was missed."""
    related_sessions: tuple[str, ...] = ()
    """Other sessions of the same person that shared this session's outreach ladder."""


class SessionState(Model):
    """Answer to the `state` query: what a supervisor needs at a glance."""

    status: SessionStatus
    """Where the session is in the protocol."""
    attempts_made: int
    """Outreach attempts so far."""
    next_action: str | None
    """What the workflow will do next, in words."""
    next_action_at: datetime | None
    """When it will do it, on the workflow's clock."""
    outcome: Outcome | None
    """Set once closed."""


class SessionResult(Model):
    """What the workflow returns when the session closes."""

    session_id: str
    """The session."""
    outcome: Outcome
    """How it closed."""
    attempts_made: int
    """Outreach attempts made."""
    plan: FollowUpPlan | None
    """The follow-up plan, for missed sessions."""
