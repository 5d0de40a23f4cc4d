"""From data a scheduling system sent to a booking that can start, or the reasons it cannot.

One path for every entry point, so the CLI, the HTTP API and the standards' adapters refuse
the same bookings with the same messages: the model's validation, the configured time
scale, the practice file's protocol and the clock-dependent check that the grace period is
not already over.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from missed_session.application.problems import describe, problems_of
from missed_session.application.results import Problem
from missed_session.domain.intake import BookingRejectedError, check_bookable
from missed_session.domain.models import SessionBooking
from missed_session.domain.practice import PracticeProtocols

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""The earliest instant a session's times may name."""
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Times from here on are refused: the protocol adds days to a start (grace periods,
outreach, follow-up), and a start near the end of the calendar would overflow it."""


def out_of_range(value: datetime) -> str | None:
    """Why `value` is outside the supported range, or None (never echoes the value)."""
    if not EARLIEST <= value < LATEST:
        return (f"must be between {EARLIEST.date().isoformat()} and "
                f"{LATEST.date().isoformat()} (UTC)")
    return None


class BadBookingError(ValueError):
    """A booking that cannot start; `problems` names every field found at fault."""

    def __init__(self, message: str, problems: tuple[Problem, ...]) -> None:
        super().__init__(message)
        self.problems = problems


def with_time_scale(data: object, time_scale: float) -> object:
    """`data` with `protocol.time_scale` defaulting to the configured one.

    A demo stack's compressed clock then applies to bookings that do not say otherwise.
    """
    if isinstance(data, Mapping):
        copy: dict[str, Any] = dict(data)
        protocol = copy.get("protocol", {})
        if isinstance(protocol, Mapping):
            copy["protocol"] = {"time_scale": time_scale, **protocol}
        return copy
    return data


def resolve_practice(booking: SessionBooking, practice: PracticeProtocols) -> SessionBooking:
    """Give the booking its therapist's protocol from the practice file.

    A booking that sets protocol timings itself is refused: the practice file decides, and
    silently overriding either would hide a disagreement.
    """
    own = sorted(booking.protocol.model_fields_set - {"time_scale"})
    if own:
        msg = (f"protocol.{own[0]}: set by the practice file {practice.source}; "
               "leave it out of the booking")
        raise BadBookingError(msg, (Problem(("protocol", own[0]), msg.split(": ", 1)[1]),))
    return practice.resolve(booking)


def prepare_booking(data: object, *, time_scale: float, practice: PracticeProtocols | None,
                    now: datetime) -> SessionBooking:
    """The booking `data` describes, ready to start; raises BadBookingError naming fields."""
    try:
        booking = SessionBooking.model_validate(with_time_scale(data, time_scale))
    except ValidationError as error:
        raise BadBookingError(describe(error), problems_of(error)) from None
    return ready(booking, practice=practice, now=now)


def ready(booking: SessionBooking, *, practice: PracticeProtocols | None,
          now: datetime) -> SessionBooking:
    """A validated booking with the practice's protocol, checked bookable at `now`."""
    problem = out_of_range(booking.start)
    if problem is not None:
        raise BadBookingError(f"start: {problem}", (Problem(("start",), problem),))
    if practice is not None:
        booking = resolve_practice(booking, practice)
    try:
        check_bookable(booking, now)
    except BookingRejectedError as error:
        raise BadBookingError(str(error), (Problem((error.field,), error.problem),)) from None
    return booking


def differing_fields(held: SessionBooking, sent: SessionBooking) -> tuple[str, ...]:
    """The dotted paths where `sent` differs from the booking `held` under its id.

    Only names, never values: the fields may be a phone number or a first name. Times
    compare as instants, so the same start written with another offset is no difference.
    """
    return tuple(_differences(held.model_dump(), sent.model_dump(), ""))


def _differences(held: object, sent: object, path: str) -> list[str]:
    if isinstance(held, dict) and isinstance(sent, dict):
        found: list[str] = []
        for key in sorted(set(held) | set(sent)):
            found += _differences(held.get(key), sent.get(key), f"{path}.{key}" if path else key)
        return found
    if held != sent:
        return [path]
    return []
