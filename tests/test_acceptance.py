"""Which messages about a session it can still act on, and the reason it gives when not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from missed_session.domain import acceptance
from missed_session.domain.intake import BookingRejectedError, check_bookable
from missed_session.domain.models import SessionStatus
from tests.support.factories import booking

NOW = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
S = SessionStatus


@pytest.mark.parametrize(("status", "checked_in", "problem"), [
    (S.SCHEDULED, False, None),
    (S.WAITING, False, None),
    (S.WAITING, True, "the client has already checked in"),
    (S.NO_SHOW, False, "the session is already a no-show"),
    (S.OUTREACH, False, "the session is already a no-show"),
    (S.ESCALATION, False, "the session is already a no-show"),
    (S.FOLLOW_UP, False, "the session is already in follow-up"),
    (S.CLOSED, False, "the session is already closed"),
])
def test_cancel_only_before_the_no_show(
    status: SessionStatus, checked_in: bool, problem: str | None
) -> None:
    assert acceptance.cancel_problem(status, checked_in=checked_in) == problem


@pytest.mark.parametrize(("status", "cancelled", "problem"), [
    (S.SCHEDULED, False, None),
    (S.WAITING, False, None),
    (S.OUTREACH, False, None),  # a late check-in ends outreach
    (S.ESCALATION, False, None),
    (S.WAITING, True, "the session is cancelled"),
    (S.FOLLOW_UP, False, "the session is already in follow-up"),
    (S.CLOSED, False, "the session is already closed"),
])
def test_check_in_until_outreach_is_over(
    status: SessionStatus, cancelled: bool, problem: str | None
) -> None:
    assert acceptance.check_in_problem(status, cancelled=cancelled) == problem


@pytest.mark.parametrize(("status", "problem"), [
    (S.SCHEDULED, "the session is not a no-show (it is scheduled)"),
    (S.WAITING, "the session is not a no-show (it is waiting)"),
    (S.NO_SHOW, None),
    (S.OUTREACH, None),
    (S.ESCALATION, None),
    (S.FOLLOW_UP, "the session is already in follow-up"),
    (S.CLOSED, "the session is already closed"),
])
def test_a_response_counts_during_outreach_only(
    status: SessionStatus, problem: str | None
) -> None:
    assert acceptance.response_problem(status) == problem


def _reschedule(start: datetime, status: SessionStatus = S.SCHEDULED) -> str | None:
    session = booking(start=(NOW + timedelta(hours=1)).isoformat())
    return acceptance.reschedule_problem(
        session, start, status=status, checked_in=False, cancelled=False, now=NOW
    )


def test_a_reschedule_into_the_future_is_accepted() -> None:
    assert _reschedule(NOW + timedelta(days=1)) is None


def test_a_reschedule_past_its_grace_period_is_refused_as_the_booking_would_be() -> None:
    start = NOW - timedelta(hours=1)
    with pytest.raises(BookingRejectedError) as at_booking:
        check_bookable(booking(start=start.isoformat()), NOW)
    assert _reschedule(start) == str(at_booking.value)


def test_a_reschedule_into_the_past_is_refused_even_within_the_grace_period() -> None:
    start = NOW - timedelta(minutes=2)
    assert _reschedule(start) == (
        f"start: {start.isoformat()} is in the past (now {NOW.isoformat()})"
    )


def test_a_reschedule_after_the_no_show_is_refused() -> None:
    assert _reschedule(NOW + timedelta(days=1), S.OUTREACH) == "the session is already a no-show"
