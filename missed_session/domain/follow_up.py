"""Follow-up planning: which concerns apply after a missed session, and what to do.

The rules follow what a careful therapist considers after a no-show: safety first, then
engagement and motivation, continuity of care, logistics and the therapeutic relationship.
Every concern carries the evidence it rests on so that a supervisor can check it.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from missed_session.domain.models import (
    AttendanceSummary,
    Concern,
    ConcernKind,
    FollowUpPlan,
    FollowUpRequest,
    FollowUpTask,
    Outcome,
    Priority,
    RiskTier,
    TaskKind,
)

ENGAGEMENT_NO_SHOWS = 2
"""No-shows in the review window from which engagement is a concern."""
RELATIONAL_NO_SHOWS = 3
"""No-shows in the review window from which the relationship itself is worth discussing."""
SAME_SLOT_NO_SHOWS = 2
"""No-shows in one weekly slot from which the slot itself is a logistical concern."""
CONTINUITY_CONSECUTIVE = 2
"""Consecutive no-shows from which continuity of care is at risk."""


def concerns_for(request: FollowUpRequest, attendance: AttendanceSummary) -> tuple[Concern, ...]:
    """Name each concern that applies, with its reason."""
    found: list[Concern] = []
    unreachable = request.outcome in {
        Outcome.UNREACHABLE_ESCALATED,
        Outcome.UNREACHABLE_ESCALATION_BLOCKED,
    }
    if request.risk_tier is RiskTier.HIGH:
        found.append(_concern(ConcernKind.SAFETY, "client is assessed as high risk"))
    elif request.risk_tier is RiskTier.ELEVATED and unreachable:
        found.append(
            _concern(ConcernKind.SAFETY, "elevated-risk client could not be reached")
        )
    elif request.escalated:
        found.append(_concern(ConcernKind.SAFETY, "emergency contact had to be called"))
    if attendance.no_shows >= ENGAGEMENT_NO_SHOWS:
        found.append(
            _concern(
                ConcernKind.ENGAGEMENT_MOTIVATION,
                f"{attendance.no_shows} no-shows in the last {attendance.window_days} days",
            )
        )
    if attendance.consecutive_no_shows >= CONTINUITY_CONSECUTIVE:
        found.append(
            _concern(
                ConcernKind.CONTINUITY_OF_CARE,
                f"{attendance.consecutive_no_shows} consecutive no-shows",
            )
        )
    if request.outcome is Outcome.ATTENDED_LATE:
        found.append(
            _concern(ConcernKind.LOGISTICAL, "client arrived after the grace period")
        )
    elif attendance.late_arrivals >= 2:
        found.append(
            _concern(
                ConcernKind.LOGISTICAL,
                f"{attendance.late_arrivals} late arrivals in the last "
                f"{attendance.window_days} days",
            )
        )
    if attendance.same_slot_no_shows >= SAME_SLOT_NO_SHOWS and attendance.slot:
        found.append(
            _concern(
                ConcernKind.LOGISTICAL,
                f"{attendance.same_slot_no_shows} no-shows on {attendance.slot} "
                f"(client's time) in the last {attendance.window_days} days",
            )
        )
    found.extend(logistical_concerns(request))
    if attendance.no_shows >= RELATIONAL_NO_SHOWS:
        found.append(
            _concern(
                ConcernKind.RELATIONAL,
                f"a pattern of {attendance.no_shows} no-shows may reflect the "
                "therapeutic relationship",
            )
        )
    return tuple(found)


def logistical_concerns(request: FollowUpRequest) -> list[Concern]:
    """Practical obstacles: a time-zone mismatch, and reschedules before the no-show."""
    found: list[Concern] = []
    client_zone, session_zone = request.client_time_zone, request.session_time_zone
    if client_zone and session_zone:
        at = request.session_start
        client_offset = at.astimezone(ZoneInfo(client_zone)).strftime("%z")
        session_offset = at.astimezone(ZoneInfo(session_zone)).strftime("%z")
        if client_offset != session_offset:
            found.append(_concern(
                ConcernKind.LOGISTICAL,
                f"the client's time zone ({client_zone}, UTC{_offset(client_offset)}) "
                f"differs from the session's ({session_zone}, UTC{_offset(session_offset)})",
            ))
    if request.reschedules:
        times = "once" if request.reschedules == 1 else f"{request.reschedules} times"
        found.append(_concern(
            ConcernKind.LOGISTICAL, f"the session was rescheduled {times} before it was missed"
        ))
    return found


def weekly_slot(start: datetime, zone: tzinfo) -> str:
    """The weekday and hour a session falls on, in the client's time, e.g. `Tuesdays at 09:00`.

    Repeated no-shows in one slot point at something logistical in that slot (a class, a
    shift, a school run) rather than at the therapy itself.
    """
    local = start.astimezone(zone)
    return f"{local:%A}s at {local:%H}:00"


def _offset(compact: str) -> str:
    """`-0800` as `-08:00`."""
    return f"{compact[:3]}:{compact[3:]}"


def tasks_for(request: FollowUpRequest, concerns: tuple[Concern, ...]) -> tuple[FollowUpTask, ...]:
    """Turn concerns into the therapist's tasks; discussing the absence is always one."""
    kinds = {concern.kind for concern in concerns}
    tasks: list[FollowUpTask] = []
    if ConcernKind.SAFETY in kinds:
        tasks.append(
            FollowUpTask(
                kind=TaskKind.SAFETY_CHECK,
                priority=Priority.URGENT,
                description="Review risk and make a safety check with the client today",
            )
        )
    if request.outcome is not Outcome.ATTENDED_LATE:
        tasks.append(
            FollowUpTask(
                kind=TaskKind.REBOOK,
                priority=Priority.ROUTINE,
                description="Offer the client a new time",
            )
        )
    if kinds & {ConcernKind.ENGAGEMENT_MOTIVATION, ConcernKind.LOGISTICAL}:
        tasks.append(
            FollowUpTask(
                kind=TaskKind.REVIEW_REMINDERS,
                priority=Priority.ROUTINE,
                description="Review reminder timing and channel with the client",
            )
        )
    if kinds & {ConcernKind.RELATIONAL, ConcernKind.CONTINUITY_OF_CARE}:
        tasks.append(
            FollowUpTask(
                kind=TaskKind.SUPERVISOR_REVIEW,
                priority=Priority.ROUTINE,
                description="Bring the attendance pattern to clinical supervision",
            )
        )
    tasks.append(
        FollowUpTask(
            kind=TaskKind.DISCUSS_AT_NEXT_SESSION,
            priority=Priority.ROUTINE,
            description="Explore the missed session with the client at the next session",
        )
    )
    return tuple(tasks)


def plan_follow_up(request: FollowUpRequest, attendance: AttendanceSummary) -> FollowUpPlan:
    """The whole plan: evidence, concerns and tasks."""
    concerns = concerns_for(request, attendance)
    return FollowUpPlan(
        attendance=attendance, concerns=concerns, tasks=tasks_for(request, concerns)
    )


def _concern(kind: ConcernKind, reason: str) -> Concern:
    return Concern(kind=kind, reason=reason)
