"""Cal.com webhooks -> an intake command.

Cal.com sends the whole booking with each booking trigger; a reschedule creates a new
booking uid and names the old one in `rescheduleUid`, so both ids lead to one session.
Free-text cancellation reasons come from the client and may hold health information: they
are not carried into the audit trail.
"""

from __future__ import annotations

import json
import re
from typing import Any

from missed_session.intake import fields
from missed_session.intake.absence import TherapistAbsent
from missed_session.intake.commands import (
    Book,
    Cancel,
    CheckIn,
    Command,
    Incoming,
    NoShow,
    Record,
    Refuse,
    Source,
)
from missed_session.intake.fields import IncompleteError, IntakeDefaults
from missed_session.intake.webhook_parts import (
    body_key,
    instant,
    minutes_between,
    modality,
    optional_instant,
)

PREFIX = "cal-"
"""Session and client ids from Cal.com carry this prefix (its uids are its own)."""

RECORDED = {
    "PING": "Cal.com test ping",
    "BOOKING_REQUESTED": "booking requested, awaiting confirmation; nothing is started",
    "BOOKING_REJECTED": "booking request rejected; nothing was started",
    "BOOKING_PAYMENT_INITIATED": "payment initiated; not used",
    "BOOKING_PAID": "payment completed; not used",
    "MEETING_STARTED": "meeting started; not used",
    "MEETING_ENDED": "meeting ended; not used",
}
HOST_ABSENT = "the host did not join the Cal Video call (AFTER_HOSTS_CAL_VIDEO_NO_SHOW)"
HOST_MARKED = "the host was marked as a no-show in Cal.com (noShowHost)"


def translate(body: bytes, defaults: IntakeDefaults) -> Incoming:
    """The command for one Cal.com delivery (raw body, signature already checked)."""
    key = body_key(body)
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return Incoming(Source.CALCOM, key, Refuse("body: not JSON", malformed=True))
    if not isinstance(message, dict) or (not isinstance(message.get("payload"), dict) and (
            "payload" in message or not message.get("triggerEvent"))):
        return Incoming(Source.CALCOM, key,
                        Refuse("payload: missing or not an object", malformed=True))
    trigger = str(message.get("triggerEvent") or "")
    # MEETING_STARTED and MEETING_ENDED carry the booking at the top level, not in `payload`
    payload: dict[str, Any] = message.get("payload", message)
    sent_at = optional_instant(message.get("createdAt"))
    previous: tuple[str, ...] = ()
    try:
        command = _command(trigger, payload, defaults)
        if trigger == "BOOKING_RESCHEDULED":
            old = payload.get("rescheduleUid") or payload.get("fromReschedule")
            previous = (fields.session_id(str(old), "payload.rescheduleUid", PREFIX),) if (
                old) else ()
    except IncompleteError as error:
        command = Refuse(str(error))
    return Incoming(Source.CALCOM, key, command, sent_at, previous)


def _command(trigger: str, payload: dict[str, Any], defaults: IntakeDefaults) -> Command:  # noqa: PLR0911 - one per trigger
    if trigger in RECORDED:
        uid = payload.get("bookingUid") or payload.get("uid")
        session = fields.session_id(str(uid), "payload.uid", PREFIX) if uid else None
        return Record(RECORDED[trigger], session)
    if trigger == "AFTER_HOSTS_CAL_VIDEO_NO_SHOW":
        return TherapistAbsent(HOST_ABSENT, fields.session_id(
            _str(payload.get("bookingUid")), "payload.bookingUid", PREFIX))
    if trigger in {"BOOKING_CREATED", "BOOKING_RESCHEDULED"}:
        return _book(trigger, payload, defaults)
    if trigger == "BOOKING_CANCELLED":
        session = fields.session_id(_str(payload.get("uid")), "payload.uid", PREFIX)
        return Cancel(session, reason="cancelled in Cal.com")
    if trigger == "AFTER_GUESTS_CAL_VIDEO_NO_SHOW":
        session = fields.session_id(_str(payload.get("bookingUid")), "payload.bookingUid",
                                    PREFIX)
        return NoShow(session)
    if trigger == "BOOKING_NO_SHOW_UPDATED":
        return _no_show_updated(payload)
    if re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", trigger):
        # Out-of-office, forms, recordings, instant meetings, ...: nothing about a session
        return Record(f"Cal.com {trigger}: not used by this service")
    return Refuse("triggerEvent: missing or not a Cal.com trigger name", malformed=True)


def _no_show_updated(payload: dict[str, Any]) -> Command:
    """Marked: the client is a no-show now; unmarked: the client was there (a check-in).

    The host marked as a no-show is the therapist's absence, not the client's: client
    outreach stands down. The host unmarked changes nothing.
    """
    session = fields.session_id(_str(payload.get("bookingUid")), "payload.bookingUid",
                                PREFIX)
    if payload.get("noShowHost") is True:
        return TherapistAbsent(HOST_MARKED, session)
    attendees = [a for a in payload.get("attendees") or [] if isinstance(a, dict)
                 and isinstance(a.get("noShow"), bool)]
    if not attendees:
        if payload.get("noShowHost") is False:
            return Record("the host's no-show mark was removed; nothing to do", session)
        return Refuse("payload.attendees: no attendee no-show status", session)
    if any(attendee.get("noShow") is True for attendee in attendees):
        return NoShow(session)
    return CheckIn(session)


def _book(trigger: str, payload: dict[str, Any], defaults: IntakeDefaults) -> Command:
    session = fields.session_id(_str(payload.get("uid")), "payload.uid", PREFIX)
    start = instant(payload.get("startTime"), "payload.startTime")
    reason = "booked in Cal.com" if trigger == "BOOKING_CREATED" else "rescheduled in Cal.com"
    try:
        booking = fields.build_booking(**_parts(payload, session, start, defaults))
    except IncompleteError as error:
        return Book(session, start, None, incomplete=str(error), reason=reason)
    return Book(session, start, booking, reason=reason)


def _parts(payload: dict[str, Any], session: str, start: Any,
           defaults: IntakeDefaults) -> dict[str, Any]:
    attendees = [a for a in payload.get("attendees") or [] if isinstance(a, dict)]
    if not attendees:
        msg = f"payload.attendees: no attendee; {fields.DIRECTORY_MISSING}"
        raise IncompleteError(msg)
    client = attendees[0]
    responses = _object(payload.get("responses"))
    phone = client.get("phoneNumber") or _response(responses, "attendeePhoneNumber") or (
        _response(responses, "phone"))
    name = client.get("firstName") or client.get("name") or _response(responses, "name")
    if isinstance(name, dict):
        name = name.get("firstName")
    organizer = _object(payload.get("organizer"))
    host = organizer.get("username") or organizer.get("email") or organizer.get("id")
    email = client.get("email")
    return {
        "session": session,
        "client_ref": fields.pseudonymous_ref(email, PREFIX, defaults, "payload.attendees[0]"),
        "client_first_name": fields.first_name(_text(name), "payload.attendees[0].name"),
        "phone": fields.reach(_text(phone),
                              email if isinstance(email, str) and "@" in email else None,
                              "payload.attendees[0].phoneNumber", defaults)[0],
        "client_time_zone": fields.time_zone(_text(client.get("timeZone")),
                                             "payload.attendees[0].timeZone", defaults),
        "therapist": defaults.therapists.get(_text(host) or "") or fields.therapist_id(
            _text(host), "payload.organizer", defaults, PREFIX),
        "start": start,
        "duration_minutes": payload.get("length") if isinstance(payload.get("length"), int)
        else minutes_between(start, payload.get("endTime")),
        "modality": modality(payload.get("location"),
                             _object(payload.get("metadata")).get("videoCallUrl")),
        "email": email if isinstance(email, str) and "@" in email else None,
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _response(responses: dict[str, Any], name: str) -> Any:
    entry = responses.get(name)
    return entry.get("value") if isinstance(entry, dict) else entry


def _str(value: Any) -> str:
    return str(value) if value is not None else ""


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None
