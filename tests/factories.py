"""Bookings for tests, valid unless a test changes them."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from missed_session.domain.models import SessionBooking


def booking_data(**overrides: Any) -> dict[str, Any]:
    """A booking as the scheduling system would send it (plain JSON-able data)."""
    data: dict[str, Any] = {
        "session_id": f"s-{uuid.uuid4().hex[:10]}",
        "client": {
            "ref": f"c-{uuid.uuid4().hex[:8]}",
            "first_name": "Robin",
            "phone": "+14155550123",
            "email": "robin@example.org",
            "time_zone": "America/Los_Angeles",
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
