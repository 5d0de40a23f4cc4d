"""Clock-dependent checks made once, when a booking arrives, before anything starts.

Kept out of the models on purpose: the workflow re-reads its input on replay, when the
clock has moved on, and must not find its own booking invalid.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from missed_session.domain.models import SessionBooking
from missed_session.domain.protocol import grace_period_minutes


class BookingRejectedError(ValueError):
    """A booking that is well-formed but cannot be started; names the field at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_bookable(booking: SessionBooking, now: datetime) -> None:
    """Refuse a session whose grace period is already over: its protocol could not run."""
    grace_ends = booking.start + timedelta(minutes=grace_period_minutes(booking))
    if grace_ends <= now:
        raise BookingRejectedError(
            "start",
            f"{booking.start.isoformat()} is already past its grace period "
            f"(ended {grace_ends.isoformat()})",
        )
