"""The follow-up planning activity: read the attendance history, decide, record."""

from __future__ import annotations

from temporalio import activity

from missed_session.domain.follow_up import plan_follow_up
from missed_session.domain.models import (
    FollowUpPlan,
    FollowUpRequest,
    InboxItemKind,
    TherapistNotice,
)
from missed_session.store.audit import AuditStore


class FollowUpActivities:
    """Plans follow-up from the client's attendance pattern."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    @activity.defn
    async def create_follow_up_plan(self, request: FollowUpRequest) -> FollowUpPlan:
        """Review the last 90 days, decide the concerns and tasks, and record them."""
        attendance = await self._store.attendance_summary(
            client_ref=request.client_ref,
            session_id=request.session_id,
            until=request.session_start,
            current=request.outcome,
            time_zone=request.client_time_zone,
        )
        plan = await self._store.save_plan(
            session_id=request.session_id,
            client_ref=request.client_ref,
            plan=plan_follow_up(request, attendance).model_copy(
                update={"related_sessions": request.related_sessions}),
        )
        for task in plan.tasks:
            await self._store.add_notice(
                TherapistNotice(
                    key=f"{request.session_id}/task/{task.kind.value}",
                    session_id=request.session_id,
                    therapist_id=request.therapist_id,
                    kind=InboxItemKind.TASK,
                    priority=task.priority,
                    title=f"{task.description} (client {request.client_ref})",
                )
            )
        return plan
