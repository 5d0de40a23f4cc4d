"""Small, shared rules for turning a scheduler's fields into the session vocabulary.

Every scheduler spells phone numbers, names and ids its own way; these helpers make one
decision each, so the FHIR, HL7, Cal.com and Calendly translators agree.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from missed_session.domain.models import (
    E164,
    SESSION_ID,
    Client,
    Modality,
    SessionBooking,
)

DIRECTORY_MISSING = (
    "the message does not carry it and the client directory cannot complete it (a FHIR "
    "Appointment may name a Patient the directory holds; other formats must carry it)"
)
"""Appended to every refusal for a missing client detail, so the sender knows why the
service cannot look it up itself."""

_NOT_ID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class IntakeDefaults:
    """What the practice configures for details that a scheduler's message may lack."""

    time_zone: str | None = None
    """IANA time zone assumed for the client when the message names none (FHIR and HL7
    carry none); None refuses such a booking."""
    country_code: str | None = None
    """Calling code (digits, e.g. "1") for national numbers without one; None refuses
    numbers that are not in E.164 form."""
    pseudonym_key: bytes = b""
    """Key for deriving a client ref from an email address (Cal.com, Calendly have no client
    id); a keyed hash, so the ref cannot be reversed by guessing addresses."""
    therapists: dict[str, str] = field(default_factory=dict)
    """Scheduler user (username, email, URI, practitioner reference) -> therapist id."""


class IncompleteError(ValueError):
    """A booking detail is missing or unusable; the message names the field, never a value."""


def phone_number(raw: str | None, where: str, defaults: IntakeDefaults) -> str:
    """An E.164 number from a scheduler's phone field, or IncompleteError naming `where`."""
    if raw is None or not raw.strip():
        msg = f"{where}: no client phone number; {DIRECTORY_MISSING}"
        raise IncompleteError(msg)
    text = raw.strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        candidate = f"+{digits}"
    elif text.startswith("00"):
        candidate = f"+{digits[2:]}"
    elif defaults.country_code and len(digits) < 6:
        msg = f"{where}: not a usable phone number (too few digits)"
        raise IncompleteError(msg)
    elif defaults.country_code:
        national = digits.removeprefix("0") if defaults.country_code != "1" else digits
        if defaults.country_code == "1" and len(digits) == 11 and digits.startswith("1"):
            national = digits[1:]
        candidate = f"+{defaults.country_code}{national}"
    else:
        msg = f"{where}: the phone number has no country code and none is configured"
        raise IncompleteError(msg)
    if not E164.fullmatch(candidate):
        msg = f"{where}: not a usable phone number"
        raise IncompleteError(msg)
    return candidate


def reach(raw_phone: str | None, raw_email: str | None, where: str,
          defaults: IntakeDefaults) -> tuple[str | None, str | None]:
    """The client's number and email address: at least one, or IncompleteError at `where`.

    A client with an email address and no phone is bookable (the ladder emails them); a
    number that is present must be usable, whatever else the message carries.
    """
    email = (raw_email or "").strip() or None
    if (raw_phone is None or not raw_phone.strip()) and email is not None:
        return None, email
    if raw_phone is None or not raw_phone.strip():
        msg = f"{where}: no client phone number or email address; {DIRECTORY_MISSING}"
        raise IncompleteError(msg)
    return phone_number(raw_phone, where, defaults), email


def first_name(raw: str | None, where: str) -> str:
    """The first word of a given name (outreach uses the first name only)."""
    words = (raw or "").split()
    if not words:
        msg = f"{where}: no client first name"
        raise IncompleteError(msg)
    return words[0][:50]


def time_zone(raw: str | None, where: str, defaults: IntakeDefaults) -> str:
    """The client's IANA zone from the message, else the practice default."""
    chosen = (raw or "").strip() or defaults.time_zone
    if not chosen:
        msg = f"{where}: no client time zone and no practice default is configured"
        raise IncompleteError(msg)
    return chosen


def identifier(raw: str, prefix: str = "", *, limit: int = 64) -> str:
    """A scheduler id as a session/client/therapist id: unsafe characters become '-'."""
    cleaned = _NOT_ID.sub("-", raw.strip()).strip("-.")
    text = f"{prefix}{cleaned}"
    if len(text) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        text = f"{text[: limit - 17]}-{digest}"
    return text


def session_id(raw: str | None, where: str, prefix: str = "") -> str:
    """The session id for a scheduler's appointment id; IncompleteError when there is none."""
    if raw is None or not raw.strip():
        msg = f"{where}: no appointment id (it becomes the session id)"
        raise IncompleteError(msg)
    value = identifier(raw, prefix)
    if not SESSION_ID.fullmatch(value):
        msg = f"{where}: not usable as a session id"
        raise IncompleteError(msg)
    return value


def pseudonymous_ref(email: str | None, prefix: str, defaults: IntakeDefaults,
                     where: str) -> str:
    """A stable client ref from an email address, keyed so it cannot be reversed."""
    if not email or not email.strip():
        msg = f"{where}: no client email to identify the client by; {DIRECTORY_MISSING}"
        raise IncompleteError(msg)
    digest = hmac.new(defaults.pseudonym_key, email.strip().lower().encode(), "sha256")
    return f"{prefix}{digest.hexdigest()[:20]}"


def therapist_id(raw: str | None, where: str, defaults: IntakeDefaults,
                 prefix: str = "") -> str:
    """The therapist id for a scheduler user: the configured mapping, else the id itself."""
    if raw is None or not raw.strip():
        msg = f"{where}: no therapist (host, practitioner or personnel) named"
        raise IncompleteError(msg)
    mapped = defaults.therapists.get(raw.strip())
    return mapped if mapped is not None else identifier(raw, prefix)


def aware(value: datetime, where: str) -> datetime:
    """Refuse a start without an offset: re-zoning it to the host would move the session."""
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{where}: the start has no UTC offset"
        raise IncompleteError(msg)
    return value


def build_booking(
    *,
    session: str,
    client_ref: str,
    client_first_name: str,
    phone: str | None,
    client_time_zone: str,
    therapist: str,
    start: datetime,
    duration_minutes: int | None,
    modality: Modality = Modality.IN_PERSON,
    email: str | None = None,
) -> SessionBooking:
    """A validated booking, or IncompleteError with the field path (never the value)."""
    duration = duration_minutes if duration_minutes and 10 <= duration_minutes <= 240 else 50
    try:
        return SessionBooking(
            session_id=session,
            client=Client(
                ref=client_ref,
                first_name=client_first_name,
                phone=phone,
                email=email,
                time_zone=client_time_zone,
            ),
            therapist_id=therapist,
            start=start,
            duration_minutes=duration,
            modality=modality,
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "booking"
        msg = f"{where}: {first['msg'].removeprefix('Value error, ')}"
        raise IncompleteError(msg) from None
