"""Bookings for tests, valid unless a test changes them; typed reading of audit rows."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from missed_session.domain.events import EventDetails, read
from missed_session.domain.models import AuditEvent, SessionBooking

Details = TypeVar("Details", bound=EventDetails)

CLIENT_TIME_ZONE = "America/Los_Angeles"
"""The client's time zone in `booking_data`."""


def daytime(after: datetime, *, hour: int = 10, time_zone: str = CLIENT_TIME_ZONE) -> datetime:
    """The first `hour`:00 local at or after `after`, in UTC.

    Sessions that start there keep their whole outreach inside the 08:00-21:00 contact
    window, whatever the wall clock says when the tests run.
    """
    zone = ZoneInfo(time_zone)
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), datetime.min.time().replace(hour=hour),
                                 tzinfo=zone)
    if candidate < local:
        candidate = datetime.combine(local.date() + timedelta(days=1), candidate.time(),
                                     tzinfo=zone)
    return candidate.astimezone(after.tzinfo)


def booking_data(**overrides: Any) -> dict[str, Any]:
    """A booking as the scheduling system would send it (plain JSON-able data)."""
    data: dict[str, Any] = {
        "session_id": f"s-{uuid.uuid4().hex[:10]}",
        "client": {
            "ref": f"c-{uuid.uuid4().hex[:8]}",
            "first_name": "Robin",
            "phone": "+14155550123",
            "email": "robin@example.org",
            "time_zone": CLIENT_TIME_ZONE,
            "emergency_contact": {
                "name": "Sam",
                "phone": "+14155550999",
                "consent": True,
                "consent_date": "2026-01-15",
            },
        },
        "therapist_id": "t-ana",
        "start": (datetime.now().astimezone() + timedelta(hours=1)).isoformat(),
        "duration_minutes": 50,
        "modality": "in_person",
        "risk_tier": "standard",
    }
    data.update(overrides)
    return data


def booking(**overrides: Any) -> SessionBooking:
    """A valid booking one hour from now."""
    return SessionBooking.model_validate(booking_data(**overrides))


def without_consent(data: dict[str, Any]) -> dict[str, Any]:
    """The same booking with the emergency contact's consent withdrawn."""
    client = dict(data["client"])
    client["emergency_contact"] = {"name": "Sam", "phone": "+14155550999", "consent": False}
    return {**data, "client": client}


CONSENT_DATE = date(2026, 1, 15)


def read_as(event: AuditEvent, model: type[Details]) -> Details:
    """The typed details of `event`, which must be a `model` event (for typed field access)."""
    details = read(event)
    assert isinstance(details, model), f"{event.event_type.value} is not a {model.__name__}"
    return details
