"""Follow-up planning rules: which concerns apply, with what evidence, and the tasks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from missed_session.domain.follow_up import plan_follow_up
from missed_session.domain.models import (
    AttendanceSummary,
    ConcernKind,
    FollowUpPlan,
    FollowUpRequest,
    Outcome,
    Priority,
    RiskTier,
    TaskKind,
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FOLLOW_UP_OUTCOMES = [
    Outcome.ATTENDED_LATE,
    Outcome.REACHED,
    Outcome.UNREACHABLE_ESCALATED,
    Outcome.UNREACHABLE_ESCALATION_BLOCKED,
]
UNREACHABLE = {Outcome.UNREACHABLE_ESCALATED, Outcome.UNREACHABLE_ESCALATION_BLOCKED}


def _request(
    *,
    risk_tier: RiskTier = RiskTier.STANDARD,
    outcome: Outcome = Outcome.REACHED,
    escalated: bool = False,
) -> FollowUpRequest:
    return FollowUpRequest(
        session_id="s-1",
        client_ref="c-1",
        therapist_id="t-ana",
        risk_tier=risk_tier,
        outcome=outcome,
        session_start=START,
        escalated=escalated,
    )


def _attendance(
    *, no_shows: int = 1, consecutive: int = 1, late: int = 0, sessions: int = 6
) -> AttendanceSummary:
    return AttendanceSummary(
        window_days=90,
        sessions=sessions,
        no_shows=no_shows,
        consecutive_no_shows=consecutive,
        late_arrivals=late,
    )


def _reasons(plan: FollowUpPlan) -> dict[ConcernKind, str]:
    return {concern.kind: concern.reason for concern in plan.concerns}


def _tasks(plan: FollowUpPlan) -> dict[TaskKind, Priority]:
    return {task.kind: task.priority for task in plan.tasks}


# Each case: request, attendance, and the concerns expected with a fragment of each reason.
CASES = [
    pytest.param(_request(), _attendance(), {}, id="first-no-show-reached-nothing-applies"),
    pytest.param(
        _request(risk_tier=RiskTier.HIGH),
        _attendance(),
        {ConcernKind.SAFETY: "high risk"},
        id="high-risk-is-safety",
    ),
    pytest.param(
        _request(risk_tier=RiskTier.HIGH, outcome=Outcome.ATTENDED_LATE),
        _attendance(no_shows=0, consecutive=0),
        {ConcernKind.SAFETY: "high risk", ConcernKind.LOGISTICAL: "after the grace period"},
        id="high-risk-even-when-late",
    ),
    pytest.param(
        _request(risk_tier=RiskTier.ELEVATED, outcome=Outcome.UNREACHABLE_ESCALATION_BLOCKED),
        _attendance(),
        {ConcernKind.SAFETY: "elevated-risk client could not be reached"},
        id="elevated-unreachable-is-safety",
    ),
    pytest.param(
        _request(risk_tier=RiskTier.ELEVATED, outcome=Outcome.REACHED),
        _attendance(),
        {},
        id="elevated-reached-is-not-safety",
    ),
    pytest.param(
        _request(outcome=Outcome.UNREACHABLE_ESCALATED, escalated=True),
        _attendance(),
        {ConcernKind.SAFETY: "emergency contact had to be called"},
        id="escalation-is-safety",
    ),
    pytest.param(
        _request(outcome=Outcome.UNREACHABLE_ESCALATION_BLOCKED),
        _attendance(),
        {},
        id="standard-unreachable-not-escalated-is-not-safety",
    ),
    pytest.param(
        _request(),
        _attendance(no_shows=2, consecutive=1),
        {ConcernKind.ENGAGEMENT_MOTIVATION: "2 no-shows in the last 90 days"},
        id="two-no-shows-engagement",
    ),
    pytest.param(
        _request(),
        _attendance(no_shows=2, consecutive=2),
        {
            ConcernKind.ENGAGEMENT_MOTIVATION: "2 no-shows in the last 90 days",
            ConcernKind.CONTINUITY_OF_CARE: "2 consecutive no-shows",
        },
        id="two-in-a-row-continuity",
    ),
    pytest.param(
        _request(),
        _attendance(no_shows=3, consecutive=1),
        {
            ConcernKind.ENGAGEMENT_MOTIVATION: "3 no-shows in the last 90 days",
            ConcernKind.RELATIONAL: "3 no-shows",
        },
        id="three-no-shows-relational",
    ),
    pytest.param(
        _request(outcome=Outcome.ATTENDED_LATE),
        _attendance(no_shows=0, consecutive=0, late=1),
        {ConcernKind.LOGISTICAL: "arrived after the grace period"},
        id="attended-late-logistical",
    ),
    pytest.param(
        _request(),
        _attendance(late=2),
        {ConcernKind.LOGISTICAL: "2 late arrivals in the last 90 days"},
        id="two-late-arrivals-logistical",
    ),
    pytest.param(
        _request(),
        _attendance(late=1),
        {},
        id="one-late-arrival-nothing",
    ),
    pytest.param(
        _request(risk_tier=RiskTier.HIGH, outcome=Outcome.UNREACHABLE_ESCALATED, escalated=True),
        _attendance(no_shows=4, consecutive=3, late=2),
        {
            ConcernKind.SAFETY: "high risk",
            ConcernKind.ENGAGEMENT_MOTIVATION: "4 no-shows",
            ConcernKind.CONTINUITY_OF_CARE: "3 consecutive no-shows",
            ConcernKind.LOGISTICAL: "2 late arrivals",
            ConcernKind.RELATIONAL: "4 no-shows",
        },
        id="everything-applies",
    ),
]


@pytest.mark.parametrize(("request_", "attendance", "expected"), CASES)
def test_concerns_and_their_evidence(
    request_: FollowUpRequest, attendance: AttendanceSummary, expected: dict[ConcernKind, str]
) -> None:
    plan = plan_follow_up(request_, attendance)
    reasons = _reasons(plan)
    assert len(plan.concerns) == len(reasons), "a concern kind appears twice"
    assert set(reasons) == set(expected)
    for kind, fragment in expected.items():
        assert fragment in reasons[kind]
    assert plan.attendance == attendance


@pytest.mark.parametrize(("request_", "attendance", "expected"), CASES)
def test_tasks_follow_the_concerns(
    request_: FollowUpRequest, attendance: AttendanceSummary, expected: dict[ConcernKind, str]
) -> None:
    tasks = _tasks(plan_follow_up(request_, attendance))
    assert tasks[TaskKind.DISCUSS_AT_NEXT_SESSION] is Priority.ROUTINE
    assert (TaskKind.SAFETY_CHECK in tasks) is (ConcernKind.SAFETY in expected)
    if ConcernKind.SAFETY in expected:
        assert tasks[TaskKind.SAFETY_CHECK] is Priority.URGENT
    assert (TaskKind.REBOOK in tasks) is (request_.outcome is not Outcome.ATTENDED_LATE)
    assert (TaskKind.REVIEW_REMINDERS in tasks) is bool(
        set(expected) & {ConcernKind.ENGAGEMENT_MOTIVATION, ConcernKind.LOGISTICAL}
    )
    assert (TaskKind.SUPERVISOR_REVIEW in tasks) is bool(
        set(expected) & {ConcernKind.RELATIONAL, ConcernKind.CONTINUITY_OF_CARE}
    )


def test_safety_check_comes_first_and_discussion_last() -> None:
    plan = plan_follow_up(_request(risk_tier=RiskTier.HIGH), _attendance(no_shows=3))
    kinds = [task.kind for task in plan.tasks]
    assert kinds[0] is TaskKind.SAFETY_CHECK
    assert kinds[-1] is TaskKind.DISCUSS_AT_NEXT_SESSION
    assert len(kinds) == len(set(kinds))


def test_no_rebook_for_attended_late() -> None:
    plan = plan_follow_up(
        _request(outcome=Outcome.ATTENDED_LATE), _attendance(no_shows=0, consecutive=0, late=1)
    )
    assert TaskKind.REBOOK not in _tasks(plan)


def _expected_kinds(request: FollowUpRequest, attendance: AttendanceSummary) -> set[ConcernKind]:
    """The rules restated independently of the implementation."""
    kinds: set[ConcernKind] = set()
    if (
        request.risk_tier is RiskTier.HIGH
        or (request.risk_tier is RiskTier.ELEVATED and request.outcome in UNREACHABLE)
        or request.escalated
    ):
        kinds.add(ConcernKind.SAFETY)
    if attendance.no_shows >= 2:
        kinds.add(ConcernKind.ENGAGEMENT_MOTIVATION)
    if attendance.consecutive_no_shows >= 2:
        kinds.add(ConcernKind.CONTINUITY_OF_CARE)
    if request.outcome is Outcome.ATTENDED_LATE or attendance.late_arrivals >= 2:
        kinds.add(ConcernKind.LOGISTICAL)
    if attendance.no_shows >= 3:
        kinds.add(ConcernKind.RELATIONAL)
    return kinds


def test_every_combination_follows_the_rules() -> None:
    checked = 0
    for risk_tier, outcome, escalated, no_shows, late in itertools.product(
        RiskTier, FOLLOW_UP_OUTCOMES, (False, True), range(5), range(4)
    ):
        for consecutive in range(no_shows + 1):
            request = _request(risk_tier=risk_tier, outcome=outcome, escalated=escalated)
            attendance = _attendance(no_shows=no_shows, consecutive=consecutive, late=late)
            plan = plan_follow_up(request, attendance)
            kinds = [concern.kind for concern in plan.concerns]
            expected = _expected_kinds(request, attendance)
            assert sorted(kinds) == sorted(expected), (request, attendance)
            tasks = _tasks(plan)
            assert TaskKind.DISCUSS_AT_NEXT_SESSION in tasks
            assert (tasks.get(TaskKind.SAFETY_CHECK) is Priority.URGENT) is (
                ConcernKind.SAFETY in expected
            )
            assert (TaskKind.REBOOK in tasks) is (outcome is not Outcome.ATTENDED_LATE)
            assert all(concern.reason for concern in plan.concerns)
            checked += 1
    assert checked == 3 * 4 * 2 * 15 * 4
