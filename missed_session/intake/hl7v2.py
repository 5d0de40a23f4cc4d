"""HL7 v2 SIU (versions 2.2 to 2.8) -> an intake command.

Parsing is the `hl7` package's; this module decides what each trigger means for a session:
S12 books, S13 moves, S14 modifies only what changed (and is a check-in when the filler
status says the client arrived), S15 cancels, S17 deletes (entered in error), S26 is a
no-show. The start comes from TQ1-7 when the message has a TQ1 segment (2.5 and later),
else from SCH-11's fourth component; a time with an offset is kept as that instant, one
without is read in the practice's time zone, never the host's.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import hl7
from hl7.datatypes import parse_datetime

from missed_session.domain.contact_window import wall_time
from missed_session.domain.models import Modality
from missed_session.intake import fields
from missed_session.intake.commands import (
    Attended,
    Book,
    Cancel,
    CheckIn,
    Command,
    Incoming,
    NoShow,
    Refuse,
    Source,
)
from missed_session.intake.fields import IncompleteError, IntakeDefaults

SUPPORTED = {"S12", "S13", "S14", "S15", "S17", "S26"}
KNOWN_UNSUPPORTED = {"S16", "S18", "S19", "S20", "S21", "S22", "S23", "S24", "S25"}
VERSIONS = {"2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8",
            "2.8.1", "2.8.2"}
S14_BY_FILLER_STATUS: dict[str, Callable[[str], Command]] = {
    "arrived": CheckIn,
    "checked in": CheckIn,
    "checkedin": CheckIn,
    "started": CheckIn,
    "noshow": NoShow,
    "no show": NoShow,
    "cancelled": lambda s: Cancel(s, reason="filler status cancelled (SIU^S14)"),
    "canceled": lambda s: Cancel(s, reason="filler status cancelled (SIU^S14)"),
    "deleted": lambda s: Cancel(s, reason="filler status deleted (SIU^S14)",
                                entered_in_error=True),
    "complete": Attended,
}
"""An S14 whose filler status (SCH-25) says what happened is that event, not a change."""
_DTM = re.compile(r"\d{12}(\d{2}(\.\d{1,4})?)?([+-]\d{4})?")
_SEGMENT_BREAK = re.compile(r"\r\n|\n|\r")


@dataclass(frozen=True)
class Header:
    """What an ACK needs from the message's MSH (empty strings when it has none)."""

    field_separator: str = "|"
    encoding: str = "^~\\&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5"
    accept_ack_type: str = ""
    application_ack_type: str = ""


@dataclass(frozen=True)
class Translated:
    """A translated SIU message: its header (for the ACK) and what it asks for."""

    header: Header
    incoming: Incoming
    error_code: str = ""
    """HL7 table 0357 code when the message is refused (for ERR-3)."""

    @property
    def non_production(self) -> bool:
        """MSH-11 says training (T) or debugging (D): not a message to act on."""
        return self.header.processing_id[:1].upper() in NON_PRODUCTION


NON_PRODUCTION = {"T": "training", "D": "debugging"}
"""MSH-11 processing ids (HL7 table 0103) that are not production."""
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""What PostgreSQL's text cannot hold: NUL, and unpaired surrogates."""


def normalise(text: str) -> str:
    """Segments separated by CR, as the standard says; senders also use LF or CRLF."""
    return "\r".join(part for part in _SEGMENT_BREAK.split(text.strip("\r\n\x0b\x1c ")) if part)


def decode(data: bytes) -> str | Translated:
    """The message's text: UTF-8, or ISO 8859 when MSH-18 names it; else an AR."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
    text = data.decode("latin-1")
    first = _SEGMENT_BREAK.split(text.strip("\r\n\x0b\x1c "), 1)[0]
    separator = first[3:4] or "|"
    charset = first.split(separator)[17] if first.count(separator) >= 17 else ""
    if charset.upper().replace(" ", "").startswith("8859"):
        return text
    reason = (f"the message is not valid UTF-8 (byte {offset}) and MSH-18 names no ISO 8859 "
              "character set; nothing done")
    return _refused(header_of(text), reason, "102", text)


def translate(text: str, defaults: IntakeDefaults) -> Translated:
    """The command for one SIU message (any segment separator)."""
    body = normalise(text)
    unreadable = _unreadable(body)
    if unreadable is not None:
        return unreadable
    try:
        message = hl7.parse(body)
        header = _header(message)
    except (ValueError, KeyError, IndexError):
        return _refused(Header(), "MSH: the message header cannot be parsed", "100", body)
    sent_at = _sent_at(message, defaults)
    problem = _unprocessable(message, header)
    if problem is not None:
        reason, code, malformed = problem
        return _refused(header, reason, code, body, sent_at, malformed=malformed)
    try:
        command = _command(message, header.trigger, defaults)
    except IncompleteError as error:
        return _refused(header, str(error), "101", body, sent_at, malformed=False)
    except _BadValueError as error:
        return _refused(header, str(error), "102", body, sent_at, malformed=False)
    code = "101" if isinstance(command, Book) and command.booking is None else ""
    return Translated(header, _incoming(header, command, sent_at), code)


def _unreadable(body: str) -> Translated | None:
    """An AR for a message without MSH, or holding what PostgreSQL cannot store; else None.

    The latter is answered without the bytes: the header is read with them removed, and
    the delivery key is a hash, never the value. The answer names where they are.
    """
    if body.startswith(("FHS", "BHS")):
        inner = body.find("\rMSH")
        header = header_of(body[inner + 1:]) if inner >= 0 else Header()
        # Answered whatever its first message's MSH-15/16 asks: the batch was not taken.
        header = replace(header, accept_ack_type="", application_ack_type="")
        return _refused(header, f"{body[:3]}: HL7 batches are not supported; send each "
                        "message on its own", "200", body, unreadable=True)
    if not body.startswith("MSH"):
        return _refused(Header(), "MSH: the message does not start with an MSH segment",
                        "100", body)
    bad = UNSTORABLE.search(body)
    if bad is None:
        return None
    cleaned = UNSTORABLE.sub("", body)
    header = Header()
    with contextlib.suppress(ValueError, KeyError, IndexError):
        header = _header(hl7.parse(cleaned))
    what = "a NUL byte" if bad.group() == "\x00" else "an unpaired surrogate"
    return _refused(header, f"{_position(body, bad.start())}: holds {what}, which cannot be "
                    "stored; nothing done", "102", body, unreadable=True)


def header_of(text: str) -> Header:
    """The header of a message that cannot be read whole (cut, oversized), if its MSH can be.

    Empty fields (a bare AR) when even the MSH cannot be read.
    """
    first = _SEGMENT_BREAK.split(UNSTORABLE.sub("", text).strip("\r\n\x0b\x1c "), 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return Header()
    try:
        return _header(hl7.parse(first))
    except (ValueError, KeyError, IndexError):
        return Header()


def delivery_key(header: Header) -> str:
    """MSH-10 within its sender (MSH-3, MSH-4): two senders may use the same ids."""
    return f"{header.sending_application}|{header.sending_facility}|{header.control_id}"


def feed(header: Header) -> str:
    """The sender feed whose clock MSH-7 is on: the sending application and facility."""
    return f"hl7|{header.sending_application}|{header.sending_facility}"


def _incoming(header: Header, command: Command, sent_at: datetime | None, *,
              key: str | None = None) -> Incoming:
    return Incoming(Source.HL7, key or delivery_key(header), command, sent_at,
                    feed=feed(header), sent_at_field="MSH-7")


def _position(body: str, index: int) -> str:
    """Where in the message a character is, as HL7 names it (e.g. MSH-10, PID-5)."""
    start = body.rfind("\r", 0, index) + 1
    segment = body[start:index]
    name = segment[:3]
    separator = body[3:4] or "|"
    number = segment.count(separator) + (1 if name == "MSH" else 0)
    return f"{name}-{number}" if number else f"segment {name}"


def _unprocessable(message: hl7.Message, header: Header) -> tuple[str, str, bool] | None:
    """Why the message cannot be processed (reason, HL7 error code, malformed), or None."""
    kind = _value(message, "MSH.F9.R1.C1")
    problems = (
        (not header.control_id, "MSH-10: no message control id", "101", True),
        (kind != "SIU", f"MSH-9: unsupported message type {kind!r}", "200", True),
        (header.trigger in KNOWN_UNSUPPORTED,
         f"MSH-9: SIU^{header.trigger} is not supported", "201", False),
        (header.trigger not in SUPPORTED and header.trigger not in KNOWN_UNSUPPORTED,
         f"MSH-9: unknown SIU trigger {header.trigger!r}", "201", True),
        (bool(header.version) and header.version not in VERSIONS,
         f"MSH-12: unsupported HL7 version {header.version!r}", "203", True),
        (not _has(message, "SCH"), "SCH: the message has no SCH segment", "100", True),
    )
    return next(((reason, code, malformed) for failed, reason, code, malformed in problems
                 if failed), None)


def _has(message: hl7.Message, segment: str) -> bool:
    try:
        message.segment(segment)
    except KeyError:
        return False
    return True


class _BadValueError(ValueError):
    """A field holds a value of the wrong form (HL7 error 102, data type error)."""


def _command(message: hl7.Message, trigger: str, defaults: IntakeDefaults) -> Command:
    session = fields.session_id(
        _value(message, "SCH.F2.R1.C1") or _value(message, "SCH.F1.R1.C1"),
        "SCH-2 (or SCH-1)")
    status = (_value(message, "SCH.F25.R1.C1") or _value(message, "SCH.F25.R1.C2")).lower()
    by_trigger: dict[str, Command] = {
        "S15": Cancel(session, reason=_reason(message) or "cancelled (SIU^S15)"),
        "S17": Cancel(session, reason="deleted (SIU^S17)", entered_in_error=True),
        "S26": NoShow(session),
    }
    if trigger in by_trigger:
        return by_trigger[trigger]
    if trigger == "S14" and status in S14_BY_FILLER_STATUS:
        return S14_BY_FILLER_STATUS[status](session)
    start = _start(message, defaults)
    reason = {"S12": "booked (SIU^S12)", "S13": "rescheduled (SIU^S13)",
              "S14": "modified (SIU^S14)"}[trigger]
    try:
        parts = _booking_parts(message, session, start, defaults)
        missing = parts.pop("unreachable")
        if missing is not None:  # the client directory may know how to reach them
            return Book(session, start, None, incomplete=missing, reason=reason,
                        by_ref=_by_ref(parts))
        booking = fields.build_booking(**parts)
    except IncompleteError as error:
        return Book(session, start, None, incomplete=str(error), reason=reason)
    return Book(session, start, booking, reason=reason)


def _by_ref(parts: dict[str, Any]) -> dict[str, object]:
    """The booking naming its client by ref alone (the directory supplies the rest)."""
    duration = parts["duration_minutes"]
    return {"session_id": parts["session"], "client": {"ref": parts["client_ref"]},
            "therapist_id": parts["therapist"], "start": parts["start"].isoformat(),
            "duration_minutes": duration if duration and 10 <= duration <= 240 else 50,
            "modality": parts["modality"].value}


def _booking_parts(message: hl7.Message, session: str, start: datetime,
                   defaults: IntakeDefaults) -> dict[str, Any]:
    try:
        message.segment("PID")
    except KeyError:
        msg = f"PID: the message has no patient; {fields.DIRECTORY_MISSING}"
        raise IncompleteError(msg) from None
    ref = _value(message, "PID.F3.R1.C1") or _value(message, "PID.F2.R1.C1")
    if not ref:
        raise IncompleteError("PID-3: no patient identifier (it becomes the client ref)")
    therapist = _therapist(message)
    duration = _duration(message)
    try:
        phone, email = fields.reach(_phone(message), _email(message), "PID-13", defaults)
        unreachable = None
    except IncompleteError as error:  # only a missing contact point: see `_by_ref`
        if _phone(message) or _email(message):
            raise
        phone = email = None
        unreachable = str(error)
    modality = Modality.TELEHEALTH if any(
        word in _value(message, "SCH.F7").lower() + _value(message, "SCH.F8").lower()
        for word in ("tele", "video", "virtual")) else Modality.IN_PERSON
    return {
        "session": session,
        "client_ref": fields.identifier(ref),
        "client_first_name": fields.first_name(_value(message, "PID.F5.R1.C2"), "PID-5.2"),
        "phone": phone,
        "email": email,
        "client_time_zone": fields.time_zone(None, "PID", defaults),
        "therapist": defaults.therapists.get(therapist) or fields.therapist_id(
            therapist, "AIP-3 (or PV1-7)", defaults),
        "start": start,
        "duration_minutes": duration,
        "modality": modality,
        "unreachable": unreachable,
    }


def _therapist(message: hl7.Message) -> str:
    for path in ("AIP.F3.R1.C1", "PV1.F7.R1.C1", "SCH.F16.R1.C1"):
        try:
            value = _value(message, path)
        except KeyError:
            continue
        if value:
            return value
    return ""


def _phone(message: hl7.Message) -> str | None:
    """The client's number from PID-13 (home) or PID-14: a cellular one first.

    XTN-12 (unformatted) or XTN-5/6/7 (country, area, local) when present, else XTN-1.
    """
    numbers: list[tuple[bool, str]] = []
    for field_number in (13, 14):
        for repetition in range(1, 6):
            base = f"PID.F{field_number}.R{repetition}"
            parts = {c: _value(message, f"{base}.C{c}") for c in (1, 3, 5, 6, 7, 12)}
            if not any(parts.values()):
                break
            if parts[12]:
                number = parts[12]
            elif parts[7]:
                number = "".join(
                    (f"+{parts[5]}" if parts[5] else "", parts[6], parts[7]))
            else:
                number = parts[1]
            if number:
                numbers.append((parts[3] != "CP", number))
    numbers.sort(key=lambda item: item[0])
    return numbers[0][1] if numbers else None


def _email(message: hl7.Message) -> str | None:
    """The client's email address from PID-13/14: XTN-4 of a NET (Internet) repetition."""
    for field_number in (13, 14):
        for repetition in range(1, 6):
            base = f"PID.F{field_number}.R{repetition}"
            use, kind, address = (_value(message, f"{base}.C{c}") for c in (2, 3, 4))
            if (use == "NET" or kind == "Internet") and "@" in address:
                return address
    return None


def _start(message: hl7.Message, defaults: IntakeDefaults) -> datetime:
    raw = ""
    try:
        message.segment("TQ1")
        raw = _value(message, "TQ1.F7.R1.C1")
        where = "TQ1-7"
    except KeyError:
        where = "SCH-11.4"
    if not raw:
        raw = _value(message, "SCH.F11.R1.C4")
        where = "SCH-11.4"
    if not raw:
        msg = f"{where}: no appointment start"
        raise _BadValueError(msg)
    return _timestamp(raw, where, defaults)


def _timestamp(raw: str, where: str, defaults: IntakeDefaults) -> datetime:
    """A DTM/TS to the minute at least; the package's parser alone accepts any prefix."""
    if not _DTM.fullmatch(raw):
        msg = f"{where}: not an HL7 timestamp (YYYYMMDDHHMM[SS[.S]][+/-ZZZZ])"
        raise _BadValueError(msg)
    try:
        value = parse_datetime(raw)
    except (ValueError, TypeError):
        msg = f"{where}: not an HL7 timestamp"
        raise _BadValueError(msg) from None
    if not isinstance(value, datetime):
        msg = f"{where}: not an HL7 timestamp"
        raise _BadValueError(msg)
    offset = value.utcoffset()
    if offset is not None:  # the package's own tzinfo class, as a standard fixed offset
        return value.replace(tzinfo=timezone(offset))
    if not defaults.time_zone:
        msg = f"{where}: the time has no offset and no practice time zone is configured"
        raise IncompleteError(msg)
    try:  # a wall time in a daylight-saving gap or overlap names no instant, or two
        return wall_time(value, defaults.time_zone)
    except ValueError as error:
        raise _BadValueError(f"{where}: {error}") from None


def _duration(message: hl7.Message) -> int | None:
    for path, units in (("TQ1.F6.R1.C1", "TQ1.F6.R1.C2"), ("SCH.F9", "SCH.F10.R1.C1"),
                        ("SCH.F11.R1.C3", "")):
        try:
            raw = _value(message, path)
            unit = _value(message, units).lower() if units else "min"
        except KeyError:
            continue
        if raw.isdigit():
            minutes = int(raw) * (60 if unit.startswith("h") else 1)
            return minutes if not unit.startswith("s") else int(raw) // 60
    return None


def _reason(message: hl7.Message) -> str:
    """The event reason by its code (SCH-6.1) only.

    Its text (SCH-6.2) may be free text with clinical detail, which the audit trail's
    reasons must not carry.
    """
    code = fields.identifier(_value(message, "SCH.F6.R1.C1"), limit=40)
    return f"cancelled (SIU^S15, reason code {code})" if code else ""


def _header(message: hl7.Message) -> Header:
    msh = message.segment("MSH")
    separators = str(msh[2]) if len(msh) > 2 else "^~\\&"
    return Header(
        field_separator=str(msh[1]),
        encoding=separators,
        sending_application=_value(message, "MSH.F3"),
        sending_facility=_value(message, "MSH.F4"),
        receiving_application=_value(message, "MSH.F5"),
        receiving_facility=_value(message, "MSH.F6"),
        trigger=_value(message, "MSH.F9.R1.C2"),
        control_id=_value(message, "MSH.F10"),
        processing_id=_value(message, "MSH.F11.R1.C1") or "P",
        version=_value(message, "MSH.F12.R1.C1"),
        accept_ack_type=_value(message, "MSH.F15"),
        application_ack_type=_value(message, "MSH.F16"),
    )


def _sent_at(message: hl7.Message, defaults: IntakeDefaults) -> datetime | None:
    raw = _value(message, "MSH.F7.R1.C1")
    if not raw:
        return None
    try:
        return _timestamp(raw, "MSH-7", defaults)
    except ValueError:
        return None


def _value(message: hl7.Message, path: str) -> str:
    """A field or component as text; empty when absent (raises KeyError: no segment)."""
    try:
        return str(message[path]).strip()
    except IndexError:
        return ""


def _refused(header: Header, reason: str, code: str, body: str,
             sent_at: datetime | None = None, *, malformed: bool = True,
             unreadable: bool = False) -> Translated:
    key = delivery_key(header) if header.control_id and not unreadable else (
        "unreadable-"
        f"{hashlib.sha256(body.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}")
    return Translated(header, _incoming(header, Refuse(reason, malformed=malformed), sent_at,
                                        key=key), code)

