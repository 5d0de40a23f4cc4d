"""The follow-up planning activity: read the attendance history, decide, record."""

from __future__ import annotations

from temporalio import activity

from missed_session.domain.follow_up import plan_follow_up
from missed_session.domain.models import (
    FollowUpPlan,
    FollowUpRequest,
    NoticeKind,
    TherapistNotice,
)
from missed_session.store.attendance import AttendanceStore
from missed_session.store.follow_up_plans import FollowUpPlanStore
from missed_session.store.inbox import InboxStore


class FollowUpActivities:
    """Plans follow-up from the client's attendance pattern."""

    def __init__(self, attendance: AttendanceStore, plans: FollowUpPlanStore,
                 inbox: InboxStore) -> None:
        self._attendance = attendance
        self._plans = plans
        self._inbox = inbox

    @activity.defn
    async def create_follow_up_plan(self, request: FollowUpRequest) -> FollowUpPlan:
        """Review the last 90 days, decide the concerns and tasks, and record them."""
        attendance = await self._attendance.summary(
            client_ref=request.client_ref,
            session_id=request.session_id,
            until=request.session_start,
            current=request.outcome,
            time_zone=request.client_time_zone,
        )
        plan = await self._plans.save_plan(
            session_id=request.session_id,
            client_ref=request.client_ref,
            plan=plan_follow_up(request, attendance).model_copy(
                update={"related_sessions": request.related_sessions}),
        )
        for task in plan.tasks:
            await self._inbox.add_notice(
                TherapistNotice(
                    key=f"{request.session_id}/task/{task.kind.value}",
                    session_id=request.session_id,
                    therapist_id=request.therapist_id,
                    kind=NoticeKind.TASK,
                    priority=task.priority,
                    title=f"{task.description} (client {request.client_ref})",
                )
            )
        return plan
