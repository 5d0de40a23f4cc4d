"""A reply to a caring message, as a notice to the therapist who holds the series.

The same delivery as a session's notices (`workflows.clinicians`): the inbox row, and with
a roster on file, a notice workflow that climbs the on-call ladder until someone
acknowledges it (abandoned by the series, which may continue-as-new meanwhile). The notice
says a reply came and where to read it, never the reply's words.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.notices import NoticeActivities
    from activities.therapist import TherapistActivities
    from missed_session.contracts.notices import (
        NoticePlanRequest,
        NoticeRequest,
        notice_workflow_id,
    )
    from missed_session.domain import caring
    from missed_session.domain.caring import CaringSeries
    from missed_session.domain.models import (
        NoticeKind,
        Priority,
        RiskTier,
        TherapistNotice,
    )
    from missed_session.temporal import search_attributes as attrs

from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT

REPLY_RISK = RiskTier.ELEVATED
"""The tier a reply's notice is planned for: a series follows an episode at risk, so a
reply is read soon, but it is not an emergency (the urgent and high-risk policies are for
sessions in progress)."""


async def tell_therapist(series: CaringSeries, reply: int) -> str:
    """Tell the series' therapist of reply number `reply`; the notice's key."""
    notice = TherapistNotice(
        key=f"{series.series_id}/reply-{reply}", session_id=series.series_id,
        therapist_id=series.therapist_id, kind=NoticeKind.TASK, priority=Priority.ROUTINE,
        title=f"{caring.REPLY_NOTICE} (client {series.client_ref})",
    )
    await workflow.execute_activity_method(
        TherapistActivities.notify_therapist, notice,
        start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
    )
    plan = await workflow.execute_activity_method(
        NoticeActivities.plan_notice, NoticePlanRequest(notice=notice, risk_tier=REPLY_RISK),
        start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
    )
    if plan is not None:  # a roster is loaded: the notice climbs until acknowledged
        await workflow.start_child_workflow(
            "NoticeWorkflow",
            NoticeRequest(notice=notice, risk_tier=REPLY_RISK, client_ref=series.client_ref,
                          client_first_name="", plan=plan, time_scale=series.time_scale),
            id=notice_workflow_id(notice.key),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=attrs.notice_initial(priority=notice.priority.value,
                                                   opened=workflow.now()),
        )
    return notice.key
