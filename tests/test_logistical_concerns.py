"""Logistical concerns in the follow-up plan: time zones and reschedules, with evidence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from missed_session.domain.follow_up import logistical_concerns, plan_follow_up
from missed_session.domain.models import (
    AttendanceSummary,
    ConcernKind,
    FollowUpRequest,
    Outcome,
    RiskTier,
    TaskKind,
)

START = datetime(2026, 7, 1, 17, 0, tzinfo=UTC)


def request(**fields: Any) -> FollowUpRequest:
    return FollowUpRequest(
        session_id="s-1", client_ref="c-1", therapist_id="t-ana", risk_tier=RiskTier.STANDARD,
        outcome=Outcome.REACHED, session_start=START, escalated=False, **fields,
    )


def test_a_client_in_another_time_zone_is_a_logistical_concern() -> None:
    (concern,) = logistical_concerns(request(
        client_time_zone="America/Los_Angeles", session_time_zone="America/New_York",
    ))
    assert concern.kind is ConcernKind.LOGISTICAL
    assert concern.reason == (
        "the client's time zone (America/Los_Angeles, UTC-07:00) differs from the "
        "session's (America/New_York, UTC-04:00)"
    )


def test_zones_with_the_same_offset_that_day_are_no_concern() -> None:
    assert logistical_concerns(request(
        client_time_zone="Europe/Paris", session_time_zone="Europe/Berlin",
    )) == []
    assert logistical_concerns(request(client_time_zone="Europe/Paris")) == []


def test_reschedules_before_the_no_show_are_a_concern_with_a_review_of_reminders() -> None:
    attendance = AttendanceSummary(window_days=90, sessions=1, no_shows=1,
                                   consecutive_no_shows=1, late_arrivals=0)
    plan = plan_follow_up(request(reschedules=2), attendance)
    assert [(c.kind, c.reason) for c in plan.concerns] == [
        (ConcernKind.LOGISTICAL, "the session was rescheduled 2 times before it was missed"),
    ]
    assert TaskKind.REVIEW_REMINDERS in {task.kind for task in plan.tasks}
    (once,) = logistical_concerns(request(reschedules=1))
    assert once.reason == "the session was rescheduled once before it was missed"
