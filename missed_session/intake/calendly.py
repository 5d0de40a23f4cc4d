"""Calendly webhooks (API v2) -> an intake command.

A Calendly reschedule is two deliveries: `invitee.canceled` for the old invitee with
`rescheduled: true` (recorded, nothing cancelled), then `invitee.created` for a new invitee
naming the old one in `old_invitee`; both invitee ids lead to one session.
"""

from __future__ import annotations

import json
from typing import Any

from missed_session.intake import fields
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

PREFIX = "calendly-"
"""Session and client ids from Calendly carry this prefix."""


def translate(body: bytes, defaults: IntakeDefaults) -> Incoming:
    """The command for one Calendly delivery (raw body, signature already checked)."""
    key = body_key(body)
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return Incoming(Source.CALENDLY, key, Refuse("body: not JSON", malformed=True))
    if not isinstance(message, dict) or not isinstance(message.get("payload"), dict):
        return Incoming(Source.CALENDLY, key,
                        Refuse("payload: missing or not an object", malformed=True))
    event = str(message.get("event") or "")
    payload: dict[str, Any] = message["payload"]
    sent_at = optional_instant(message.get("created_at"))
    previous: tuple[str, ...] = ()
    try:
        command = _command(event, payload, defaults)
        old = payload.get("old_invitee")
        if event == "invitee.created" and isinstance(old, str) and old:
            previous = (invitee_session(old, "payload.old_invitee"),)
    except IncompleteError as error:
        command = Refuse(str(error))
    return Incoming(Source.CALENDLY, key, command, sent_at, previous)


def invitee_session(uri: Any, where: str) -> str:
    """The session id for an invitee URI (…/scheduled_events/<event>/invitees/<invitee>)."""
    text = str(uri or "").rstrip("/")
    return fields.session_id(text.rsplit("/", 1)[-1] if text else None, where, PREFIX)


def _command(event: str, payload: dict[str, Any], defaults: IntakeDefaults) -> Command:  # noqa: PLR0911
    if event == "invitee.created":
        return _book(payload, defaults)
    if event == "invitee.canceled":
        session = invitee_session(payload.get("uri"), "payload.uri")
        if payload.get("rescheduled") is True:
            return Record("rescheduled in Calendly: the new booking follows as invitee.created",
                          session)
        cancellation = payload.get("cancellation")
        by = cancellation.get("canceler_type") if isinstance(cancellation, dict) else None
        who = f" by the {by}" if by in {"host", "invitee"} else ""
        return Cancel(session, reason=f"cancelled in Calendly{who}")
    if event == "invitee_no_show.created":
        return NoShow(_no_show_invitee(payload))
    if event == "invitee_no_show.deleted":
        return CheckIn(_no_show_invitee(payload))
    if event.startswith(("routing_form_submission.", "event_type.", "invitee.")):
        return Record(f"Calendly {event}: not used by this service")
    return Refuse("event: missing or not a Calendly event name", malformed=True)


def _no_show_invitee(payload: dict[str, Any]) -> str:
    """The session of a no-show event's invitee.

    Calendly's webhook sends the Invitee itself (`uri`, with `no_show`); the API's
    InviteeNoShow resource names it in `invitee`. Both are read.
    """
    uri = payload.get("uri")
    if isinstance(uri, str) and "/invitees/" in uri:
        return invitee_session(uri, "payload.uri")
    return invitee_session(payload.get("invitee"), "payload.uri")


def _book(payload: dict[str, Any], defaults: IntakeDefaults) -> Command:
    session = invitee_session(payload.get("uri"), "payload.uri")
    scheduled = payload.get("scheduled_event")
    if not isinstance(scheduled, dict):
        msg = "payload.scheduled_event: missing"
        raise IncompleteError(msg)
    start = instant(scheduled.get("start_time"), "payload.scheduled_event.start_time")
    reason = "rescheduled in Calendly" if payload.get("old_invitee") else "booked in Calendly"
    try:
        booking = fields.build_booking(**_parts(payload, scheduled, session, start, defaults))
    except IncompleteError as error:
        return Book(session, start, None, incomplete=str(error), reason=reason)
    return Book(session, start, booking, reason=reason)


def _parts(payload: dict[str, Any], scheduled: dict[str, Any], session: str, start: Any,
           defaults: IntakeDefaults) -> dict[str, Any]:
    phone = payload.get("text_reminder_number") or _answer(payload, "phone")
    name = payload.get("first_name") or payload.get("name")
    memberships = [m for m in scheduled.get("event_memberships") or [] if isinstance(m, dict)]
    host = memberships[0].get("user") if memberships else None
    host_id = str(host).rstrip("/").rsplit("/", 1)[-1] if host else None
    found = scheduled.get("location")
    location: dict[str, Any] = found if isinstance(found, dict) else {}
    email = payload.get("email")
    return {
        "session": session,
        "client_ref": fields.pseudonymous_ref(email if isinstance(email, str) else None,
                                              PREFIX, defaults, "payload.email"),
        "client_first_name": fields.first_name(name if isinstance(name, str) else None,
                                               "payload.first_name"),
        "phone": fields.reach(phone if isinstance(phone, str) else None,
                              email if isinstance(email, str) and "@" in email else None,
                              "payload.text_reminder_number", defaults)[0],
        "client_time_zone": fields.time_zone(
            payload.get("timezone") if isinstance(payload.get("timezone"), str) else None,
            "payload.timezone", defaults),
        "therapist": defaults.therapists.get(str(host)) or fields.therapist_id(
            host_id, "payload.scheduled_event.event_memberships", defaults, PREFIX),
        "start": start,
        "duration_minutes": minutes_between(start, scheduled.get("end_time")),
        "modality": modality(location.get("type"), location.get("join_url")),
        "email": email if isinstance(email, str) and "@" in email else None,
    }


def _answer(payload: dict[str, Any], word: str) -> str | None:
    """An answer to a booking question whose wording mentions `word` (e.g. phone)."""
    for item in payload.get("questions_and_answers") or []:
        if isinstance(item, dict) and word in str(item.get("question", "")).lower():
            answer = item.get("answer")
            return str(answer) if answer else None
    return None
