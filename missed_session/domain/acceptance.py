"""Messages about a session (check-in, cancel, reschedule, responses): which it can still act on.

The workflow's update validators call these; a non-None answer refuses the message with
that reason, so the sender hears at once that nothing changed instead of a silent no-op.
Pure functions of the session's status and the message, unit-tested without a server.
"""

from __future__ import annotations

from datetime import datetime

from missed_session.domain.decisions import OUTREACH_STATUSES
from missed_session.domain.intake import BookingRejectedError, check_bookable
from missed_session.domain.models import SessionBooking, SessionStatus

BEFORE_NO_SHOW = frozenset({SessionStatus.SCHEDULED, SessionStatus.WAITING})
"""Where the session can still be cancelled or moved."""
OVER = frozenset({SessionStatus.FOLLOW_UP, SessionStatus.CLOSED})
"""Where outreach has ended: a check-in or a response comes too late to change the outcome."""


def where(status: SessionStatus) -> str:
    """The session's status as a refusal names it."""
    if status in OUTREACH_STATUSES:
        return "the session is already a no-show"
    if status is SessionStatus.FOLLOW_UP:
        return "the session is already in follow-up"
    if status is SessionStatus.CLOSED:
        return "the session is already closed"
    return f"the session is {status.value}"


def check_in_problem(status: SessionStatus, *, cancelled: bool) -> str | None:
    """Why a check-in cannot change the session now, or None if it can."""
    if cancelled:
        return "the session is cancelled"
    if status in OVER:
        return where(status)
    return None


def cancel_problem(status: SessionStatus, *, checked_in: bool) -> str | None:
    """Why the session cannot be cancelled now, or None if it can (before the no-show only)."""
    if checked_in:
        return "the client has already checked in"
    if status not in BEFORE_NO_SHOW:
        return where(status)
    return None


def reschedule_problem(
    booking: SessionBooking,
    start: datetime,
    *,
    status: SessionStatus,
    checked_in: bool,
    cancelled: bool,
    now: datetime,
) -> str | None:
    """Why the session cannot move to `start` now, or None if it can.

    A new start in the past, or one whose grace period is already over, is refused as the
    booking itself would be: the session would be declared a no-show the moment it moved.
    """
    if cancelled:
        return "the session is cancelled"
    problem = cancel_problem(status, checked_in=checked_in)
    if problem is not None:
        return problem
    try:
        check_bookable(booking.model_copy(update={"start": start}), now)
    except BookingRejectedError as error:
        return str(error)
    if start < now:
        return f"start: {start.isoformat()} is in the past (now {now.isoformat()})"
    return None


def response_problem(status: SessionStatus) -> str | None:
    """Why a response from the client cannot change the session now, or None if it can."""
    if status in OUTREACH_STATUSES:
        return None
    if status in BEFORE_NO_SHOW:
        return f"the session is not a no-show (it is {status.value})"
    return where(status)
