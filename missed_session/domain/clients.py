"""The client directory and consent history, as pure rules.

A client's contact details and consent belong to the client, not to a session: the
directory holds the current details, and consent is a history of dated records (a
withdrawal is a new record, never an edit). Whether a step may use a contact point is a
pure function of that history as of an instant (:func:`decide`), so the outreach activity
can ask it immediately before the provider call and a test can ask it without servers.

Opt-outs by text (STOP) are keyed by the phone number, not by the client: a record with no
`client_ref` applies to every client whose directory entry uses that number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import EmailStr, Field, ValidationError, model_validator

from missed_session.domain.models import (
    AwareDatetime,
    CallResult,
    Channel,
    Client,
    ConsentScope,
    ContactPreferences,
    EmergencyContact,
    Model,
    PhoneNumber,
    RiskTier,
    TimeZoneName,
)

CLIENT_REF_PATTERN = r"^[A-Za-z0-9_.-]+$"


class ContactUse(StrEnum):
    """What a contact point is for the client (FHIR ContactPoint.use)."""

    MOBILE = "mobile"
    HOME = "home"
    WORK = "work"


class PhonePoint(Model):
    """One phone number of the client."""

    number: PhoneNumber
    """E.164 number."""
    use: ContactUse = ContactUse.MOBILE
    """Mobile, home or work: texts go to mobile numbers only."""
    verified: bool = False
    """Whether the practice confirmed the number reaches the client."""


class EmailPoint(Model):
    """One email address of the client."""

    address: EmailStr
    """The address."""
    use: ContactUse = ContactUse.HOME
    """Home or work."""
    verified: bool = False
    """Whether the practice confirmed the address reaches the client."""


class DirectoryContact(Model):
    """An emergency contact in the directory (consent to reach them is a consent record)."""

    name: str = Field(min_length=1, max_length=100)
    """How the practice addresses them."""
    phone: PhoneNumber
    """E.164 number the escalation call goes to."""
    relationship: str = Field(default="", max_length=50)
    """Their relationship to the client, as the client described it."""


class PostalAddress(Model):
    """Where a letter to the client is posted: the minimum a postal service delivers on.

    Optional in the directory (outreach never needs it); only the letter step reads it, and
    it is never logged or written to the audit trail. `recipient` is the name the envelope
    carries (the directory otherwise keeps a first name only); the letter greets the client
    by first name.
    """

    recipient: str = Field(min_length=1, max_length=100)
    """The name as it goes on the envelope."""
    lines: tuple[str, ...] = Field(min_length=1, max_length=3)
    """Street lines (house, street, flat), first line first."""
    locality: str = Field(min_length=1, max_length=80)
    """Town or city."""
    region: str = Field(default="", max_length=80)
    """State, county or province, when the country uses one."""
    postal_code: str = Field(min_length=1, max_length=16)
    """ZIP or postcode."""
    country: str = Field(default="US", min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")
    """ISO 3166-1 alpha-2 code."""

    @model_validator(mode="after")
    def _one_line_each(self) -> PostalAddress:
        parts = (self.recipient, *self.lines, self.locality, self.region, self.postal_code)
        if any(not part.isprintable() for part in parts):
            msg = "postal_address: each part is printable text on one line"
            raise ValueError(msg)
        if any(not line.strip() for line in self.lines):
            msg = "postal_address.lines: a street line is empty"
            raise ValueError(msg)
        return self

    def block(self) -> tuple[str, ...]:
        """The address as it is printed for a window envelope, line by line."""
        last = " ".join(part for part in (self.locality + ("," if self.region else ""),
                                          self.region, self.postal_code) if part)
        return (self.recipient, *self.lines, last,
                *(() if self.country == "US" else (self.country,)))


class ClientRecord(Model):
    """A client's entry in the directory: who they are and how to reach them, now."""

    ref: str = Field(min_length=1, max_length=64, pattern=CLIENT_REF_PATTERN)
    """Pseudonymous id (the only part that is logged)."""
    first_name: str = Field(min_length=1, max_length=50)
    """The only part of the name outreach uses."""
    time_zone: TimeZoneName
    """IANA zone the client lives in, for the contact window."""
    phones: tuple[PhonePoint, ...] = Field(default=(), max_length=5)
    """Phone numbers, in the order to try them."""
    emails: tuple[EmailPoint, ...] = Field(default=(), max_length=3)
    """Email addresses, in the order to try them."""
    emergency_contacts: tuple[DirectoryContact, ...] = Field(default=(), max_length=3)
    """Emergency contacts, first one first."""
    flags: tuple[str, ...] = Field(default=(), max_length=10)
    """The practice's own flags (e.g. `interpreter`), never clinical detail."""
    postal_address: PostalAddress | None = None
    """Where letters go; None: letters are prepared unaddressed (the practice addresses
    them from its own records)."""

    @model_validator(mode="after")
    def _consistent(self) -> ClientRecord:
        own = {point.number for point in self.phones}
        for index, contact in enumerate(self.emergency_contacts):
            if contact.phone in own:
                msg = f"emergency_contacts.{index}.phone: is the client's own number"
                raise ValueError(msg)
        if len(own) != len(self.phones):
            msg = "phones: a number is listed twice"
            raise ValueError(msg)
        for flag in self.flags:
            if not flag or len(flag) > 32 or not flag.replace("-", "").replace("_", "").isalnum():
                msg = "flags: each flag is 1-32 letters, digits, '-' or '_'"
                raise ValueError(msg)
        return self


class ConsentSubject(StrEnum):
    """What a consent record is about: a channel, or reaching the emergency contact."""

    CALL = "call"
    VOICEMAIL = "voicemail"
    TEXT = "text"
    EMAIL = "email"
    EMERGENCY_CONTACT = "emergency_contact"


class ConsentSource(StrEnum):
    """Where a consent record came from."""

    INTAKE_FORM = "intake_form"
    CLIENT_REQUEST = "client_request"
    STOP_REPLY = "stop_reply"
    START_REPLY = "start_reply"
    CLINICIAN = "clinician"
    BOOKING = "booking"
    """Carried by a scheduler's booking (what the booking said, recorded as such)."""


class ConsentEntry(Model):
    """A consent record as it is submitted: every field but the store's id is required.

    `client_ref` None means "every client using `contact_point`" (a STOP/START reply).
    """

    client_ref: str | None = Field(default=None, min_length=1, max_length=64,
                                   pattern=CLIENT_REF_PATTERN)
    """Whose consent; None for a number-wide STOP/START."""
    subject: ConsentSubject
    """The channel, or the emergency contact."""
    contact_point: str | None = Field(default=None, min_length=3, max_length=254)
    """The number or address it covers; None: every contact point of the client."""
    scope: ConsentScope | None = None
    """For the emergency contact: when it may be reached."""
    granted: bool
    """True: consent given; False: withdrawn or refused."""
    effective_at: AwareDatetime
    """When the client gave or withdrew it (the record's date)."""
    source: ConsentSource
    """Where the record came from."""
    recorded_by: str = Field(min_length=1, max_length=64, pattern=CLIENT_REF_PATTERN)
    """Staff id or service component that recorded it (never a name)."""

    @model_validator(mode="after")
    def _coherent(self) -> ConsentEntry:
        if self.client_ref is None and (self.contact_point is None
                                        or self.subject is not ConsentSubject.TEXT):
            msg = "client_ref: required, except for a text consent keyed by a phone number"
            raise ValueError(msg)
        if self.subject is ConsentSubject.EMERGENCY_CONTACT:
            if self.granted and self.scope is None:
                msg = "scope: required when consent to reach the emergency contact is given"
                raise ValueError(msg)
        elif self.scope is not None:
            msg = "scope: only for the emergency contact"
            raise ValueError(msg)
        if self.contact_point is not None:
            _check_contact_point(self.subject, self.contact_point)
        if self.source in {ConsentSource.STOP_REPLY, ConsentSource.START_REPLY} and (
            self.subject is not ConsentSubject.TEXT
            or self.granted is not (self.source is ConsentSource.START_REPLY)
        ):
            msg = "source: a STOP reply withdraws text consent; a START reply gives it"
            raise ValueError(msg)
        return self


class ConsentRecord(ConsentEntry):
    """A stored consent record: the entry, its id and when the store took it."""

    record_id: str
    """`consent-<n>`: named in the audit events of the steps that relied on it."""
    recorded_at: AwareDatetime
    """When the directory stored it."""


class StepOutcome(Model):
    """What an outreach step reports: the provider's answer and the consent it relied on."""

    result: CallResult | None = None
    """For calls, voicemail and the emergency contact: what the provider confirmed."""
    consent_record: str | None = None
    """The consent record the step relied on; None: the booking's snapshot or the default."""
    at: AwareDatetime | None = None
    """When the step went out: the start of the activity's try that took it (the server's
    clock). The trail records the step at this time, not when the workflow next ran (under
    load, seconds later); None in histories recorded before it: the workflow's time."""


class ConsentDefaults(Model):
    """What a subject with no consent record means: the practice file may relax it.

    The built-in default is conservative: a call only (a ringing phone says nothing); no
    voicemail, text, email or emergency contact without a record.
    """

    call: bool = True
    """Call a number without a call record."""
    voicemail: bool = False
    """Leave a voicemail without a record."""
    text: bool = False
    """Text without a record."""
    email: bool = False
    """Email without a record."""
    emergency_contact: bool = False
    """Never configurable to True: escalation always needs a record (or a clinician)."""

    @model_validator(mode="after")
    def _emergency_needs_record(self) -> ConsentDefaults:
        if self.emergency_contact:
            msg = "emergency_contact: reaching the emergency contact always needs a record"
            raise ValueError(msg)
        return self

    def allows(self, subject: ConsentSubject) -> bool:
        """Whether `subject` is allowed without any record."""
        allowed: bool = getattr(self, subject.value)
        return allowed


@dataclass(frozen=True)
class ConsentDecision:
    """The answer to "may we use this contact point for this, now?"."""

    allowed: bool
    """Whether the step may go ahead."""
    record_id: str | None
    """The record the answer rests on; None when it rests on the practice's default."""
    reason: str
    """One line for the audit trail (no contact details)."""


def _check_contact_point(subject: ConsentSubject, value: str) -> None:
    try:
        if subject is ConsentSubject.EMAIL:
            EmailPoint(address=value)
        else:
            PhonePoint(number=value)
    except ValidationError:
        kind = "an email address" if subject is ConsentSubject.EMAIL else (
            "an E.164 phone number such as +14155550123")
        msg = f"contact_point: must be {kind} for {subject.value}"
        raise ValueError(msg) from None


def decide(history: Iterable[ConsentRecord], *, client_ref: str, subject: ConsentSubject,
           contact_point: str | None, at: datetime, defaults: ConsentDefaults,
           scope_needed: Sequence[ConsentScope] = ()) -> ConsentDecision:
    """Whether `client_ref` may be reached on `contact_point` for `subject` at `at`.

    The latest record in effect at `at` that covers the step wins (but a booking's grant
    never lifts a withdrawal: `_in_force`): one for the client and this contact point, one
    for the client and any contact point, or a number-wide STOP or START for this number.
    Records dated after `at` do not count yet. For the emergency
    contact, a given consent must have one of `scope_needed`'s scopes.
    """
    relevant = [
        record for record in history
        if record.subject is subject and record.effective_at <= at
        and (record.client_ref is None or record.client_ref == client_ref)
        and (record.contact_point is None or record.contact_point == contact_point)
        and (record.client_ref is not None or record.contact_point == contact_point)
    ]
    if not relevant:
        allowed = defaults.allows(subject)
        return ConsentDecision(allowed, None, (
            f"no {subject.value} consent record; the practice default "
            f"{'allows' if allowed else 'does not allow'} it"))
    latest = _in_force(sorted(relevant, key=lambda r: (r.effective_at, _sequence(r))))
    if not latest.granted:
        return ConsentDecision(False, latest.record_id,
                               f"{subject.value} consent withdrawn ({latest.record_id}, "
                               f"{latest.source.value})")
    if scope_needed and latest.scope not in scope_needed:
        return ConsentDecision(False, latest.record_id,
                               f"{subject.value} consent ({latest.record_id}) does not cover "
                               "this situation")
    return ConsentDecision(True, latest.record_id,
                           f"{subject.value} consent {latest.record_id}")


def _in_force(ordered: Sequence[ConsentRecord]) -> ConsentRecord:
    """The record in force after `ordered` (oldest first).

    The latest wins, except that a booking's grant never lifts a withdrawal: a scheduler's
    snapshot is a request, not the client's word, so after a STOP or a withdrawal only a
    record from a source that proves the client's will (a START from the number, the
    client's request, a clinician's record) gives consent back.
    """
    in_force = ordered[0]
    for record in ordered[1:]:
        if record.granted and record.source is ConsentSource.BOOKING and not in_force.granted:
            continue
        in_force = record
    return in_force


def scopes_for(risk_tier: RiskTier) -> tuple[ConsentScope, ...]:
    """The emergency-contact scopes that cover an unreachable client of `risk_tier`."""
    if risk_tier is RiskTier.STANDARD:
        return (ConsentScope.UNREACHABLE,)
    return (ConsentScope.UNREACHABLE, ConsentScope.SAFETY_CONCERN)


def _sequence(record: ConsentRecord) -> int:
    digits = record.record_id.rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else 0


SUBJECT_OF = {Channel.CALL: ConsentSubject.CALL, Channel.VOICEMAIL: ConsentSubject.VOICEMAIL,
              Channel.TEXT: ConsentSubject.TEXT, Channel.EMAIL: ConsentSubject.EMAIL}
"""The consent subject each outreach channel needs."""


@dataclass(frozen=True)
class Reach:
    """Where a step goes and the consent record it rests on."""

    address: str
    """The number or email address to use."""
    decision: ConsentDecision
    """Why it may."""


def reach(record: ClientRecord, history: Sequence[ConsentRecord], channel: Channel, *,
          at: datetime, defaults: ConsentDefaults) -> Reach | ConsentDecision:
    """The first contact point of `record` this channel may use at `at`, or why none may.

    Calls and voicemail use any phone in order; texts only mobile numbers; email the
    addresses in order. The refusal returned is the first contact point's (the one the
    client would expect us to use).
    """
    subject = SUBJECT_OF[channel]
    if channel is Channel.EMAIL:
        candidates = [point.address for point in record.emails]
    else:
        candidates = [point.number for point in record.phones
                      if channel is not Channel.TEXT or point.use is ContactUse.MOBILE]
    refusal: ConsentDecision | None = None
    for address in candidates:
        decision = decide(history, client_ref=record.ref, subject=subject,
                          contact_point=address, at=at, defaults=defaults)
        if decision.allowed:
            return Reach(address, decision)
        refusal = refusal or decision
    if refusal is not None:
        return refusal
    return ConsentDecision(False, None, _no_point(record, channel))


def _no_point(record: ClientRecord, channel: Channel) -> str:
    """Why `channel` has nowhere to go for `record`, in the words the trail uses."""
    if channel is Channel.EMAIL:
        return "no email address on file"
    if not record.phones:
        return "no phone number on file"
    return "no mobile number on file (the numbers on file are landlines)"


def emergency_reach(record: ClientRecord, history: Sequence[ConsentRecord], *,
                    at: datetime, risk_tier: RiskTier,
                    defaults: ConsentDefaults) -> tuple[DirectoryContact, ConsentDecision] | (
                        ConsentDecision):
    """The first emergency contact consent covers at `at`, or why none may be reached."""
    refusal: ConsentDecision | None = None
    for contact in record.emergency_contacts:
        decision = decide(history, client_ref=record.ref,
                          subject=ConsentSubject.EMERGENCY_CONTACT,
                          contact_point=contact.phone, at=at, defaults=defaults,
                          scope_needed=scopes_for(risk_tier))
        if decision.allowed:
            return contact, decision
        refusal = refusal or decision
    return refusal or ConsentDecision(False, None, "no emergency contact on file")


def snapshot(record: ClientRecord, history: Sequence[ConsentRecord], *, at: datetime,
             defaults: ConsentDefaults, risk_tier: RiskTier = RiskTier.STANDARD) -> Client:
    """The booking's snapshot of the client as the directory says at `at`.

    The session carries it as a cache (its first number, its consents as of booking); the
    outreach activity asks the directory again before every step.
    """
    if not record.phones and not record.emails:
        msg = ("phones: the directory has no phone number and no email address for this "
               "client; outreach needs at least one")
        raise ValueError(msg)
    # The first number, preferring a mobile one only in what it may carry: calls go to
    # the first number as the directory orders them; a landline-only client takes no texts.
    phone = record.phones[0].number if record.phones else None
    landline = bool(record.phones) and all(
        point.use is not ContactUse.MOBILE for point in record.phones)
    email = record.emails[0].address if record.emails else None

    def allowed(channel: Channel) -> bool:
        return isinstance(reach(record, history, channel, at=at, defaults=defaults), Reach)

    preferences = ContactPreferences(
        call=allowed(Channel.CALL), voicemail=allowed(Channel.VOICEMAIL),
        text=allowed(Channel.TEXT), email=email is not None and allowed(Channel.EMAIL),
    )
    contact: EmergencyContact | None = None
    found = emergency_reach(record, history, at=at, risk_tier=risk_tier, defaults=defaults)
    if isinstance(found, tuple):
        chosen, decision = found
        given = next(r for r in history if r.record_id == decision.record_id)
        contact = EmergencyContact(name=chosen.name, phone=chosen.phone, consent=True,
                                   consent_date=given.effective_at.date(),
                                   consent_scope=given.scope or ConsentScope.UNREACHABLE)
    elif record.emergency_contacts:
        first = record.emergency_contacts[0]
        contact = EmergencyContact(name=first.name, phone=first.phone, consent=False)
    return Client(ref=record.ref, first_name=record.first_name, phone=phone,
                  landline=landline, email=email, time_zone=record.time_zone,
                  emergency_contact=contact, preferences=preferences)


def record_from_booking(client: Client, existing: ClientRecord | None) -> ClientRecord:
    """The directory entry a booking's full client details make (they update the directory).

    The booking's phone and email become the first contact points; other points the
    directory knew stay after them; its emergency contact goes first.
    """
    phones = [] if client.phone is None else [PhonePoint(
        number=client.phone, use=ContactUse.HOME if client.landline else ContactUse.MOBILE)]
    emails = [EmailPoint(address=client.email)] if client.email else []
    contacts: list[DirectoryContact] = []
    if client.emergency_contact is not None:
        contacts.append(DirectoryContact(name=client.emergency_contact.name,
                                         phone=client.emergency_contact.phone))
    if existing is not None:
        phones += [p for p in existing.phones if p.number != client.phone]
        emails += [e for e in existing.emails if e.address != client.email]
        contacts += [c for c in existing.emergency_contacts
                     if all(c.phone != known.phone for known in contacts)]
    own = {p.number for p in phones}
    contacts = [c for c in contacts if c.phone not in own]
    return ClientRecord(ref=client.ref, first_name=client.first_name,
                        time_zone=client.time_zone, phones=tuple(phones[:5]),
                        emails=tuple(emails[:3]), emergency_contacts=tuple(contacts[:3]),
                        flags=existing.flags if existing is not None else (),
                        postal_address=existing.postal_address if existing is not None
                        else None)


def consents_from_booking(client: Client, *, at: datetime,
                          recorded_by: str) -> list[ConsentEntry]:
    """The consent records a booking's client details carry (source: booking).

    A withdrawal is recorded only when the booking states it: a booking that leaves a
    channel (or the emergency contact's consent) out says nothing, and the model's `False`
    defaults must not be written into the client's history as withdrawals. The booking
    model's `True` defaults (call, voicemail) keep their documented meaning, "what every
    booking meant before per-channel consent existed" (ContactPreferences).
    """
    stated = client.preferences.model_fields_set if "preferences" in client.model_fields_set \
        else set()
    entries = [
        ConsentEntry(client_ref=client.ref, subject=SUBJECT_OF[channel],
                     contact_point=client.email if channel is Channel.EMAIL else client.phone,
                     granted=client.preferences.allows(channel), effective_at=at,
                     source=ConsentSource.BOOKING, recorded_by=recorded_by)
        for channel in Channel
        if (channel.value in stated or client.preferences.allows(channel))
        and (client.email is not None if channel is Channel.EMAIL
             else client.phone is not None)
    ]
    contact = client.emergency_contact
    if contact is not None and "consent" in contact.model_fields_set:
        entries.append(ConsentEntry(
            client_ref=client.ref, subject=ConsentSubject.EMERGENCY_CONTACT,
            contact_point=contact.phone,
            scope=contact.consent_scope if contact.consent else None,
            granted=contact.consent, effective_at=at, source=ConsentSource.BOOKING,
            recorded_by=recorded_by))
    return entries
