"""The one place a session tells its clinicians something: a notice, and its delivery.

Every alert and task a session gives (the no-show alert, an escalation blocked, an answer
not clearly the client's, an escalation that may not have reached the contact, a refused
trail) is made by `Clinicians.notice` and delivered by `Clinicians.tell`: the inbox row,
and with a roster on file, a notice workflow that climbs the on-call ladder until a person
acknowledges it. The notice key (`<session id>/<name>`) is the inbox row's and the notice
workflow's id, so a notice is found, and acknowledged, without the session.

A notice tells its session when a person acknowledges it or when it runs out of steps
(`tell_session`, a signal): the session may not close as final until a person has it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.notices import NoticeActivities
    from activities.therapist import TherapistActivities
    from missed_session.contracts.notices import (
        NoticePlan,
        NoticePlanRequest,
        NoticeRequest,
        notice_workflow_id,
    )
    from missed_session.domain import person
    from missed_session.domain.facts import NoticeNews
    from missed_session.domain.models import (
        NoticeKind,
        Priority,
        SessionBooking,
        TherapistNotice,
    )
    from missed_session.domain.notices import Policy
    from missed_session.temporal import search_attributes as attrs

from workflows.patches import Patches
from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT

NOTICE_WORKFLOWS = "notice-workflows"
"""Patch id: sessions recorded before notices were workflows replay without them."""
AWAIT_ACKNOWLEDGMENT = "await-acknowledgment"
"""Patch id: a notice tells its session of an acknowledgment or a run-out, and a session
nobody has acknowledged (high risk, or a notice ran out) awaits a clinician, its ladder
climbing again, before it closes; the emergency contact's call result is recorded.
Workflows recorded before it replay without any of it."""
NOTICES_TRACK_REASON = "notices-track-reason"
"""Patch id: a notice resolved by the end of its session's reason (and, in the session, the
alert's words and the therapist's notice of an emergency call); histories recorded before
it replay without. Here, not beside the notice workflow: a session's sandbox then need not
run `workflows/notice.py` (a pydantic model's class creation) for every session it starts."""
NOTICE_NEWS = "notice_news"
"""The session's signal a notice sends (`SessionMessages.notice_news`)."""


class Clinicians:
    """The session's therapist, and through the roster whoever is on call above them."""

    def __init__(self, booking: SessionBooking, patches: Patches) -> None:
        self._booking = booking
        self._patches = patches
        self._made: Counter[str] = Counter()
        """Notices made so far, by name: each one of a kind has its own key."""
        self.delivering = 0
        """Notice workflows started: notices someone can acknowledge (a roster is loaded)."""

    def notice(self, name: str, kind: NoticeKind, priority: Priority, title: str, *,
               numbered: bool | None = None) -> TherapistNotice:
        """A new notice called `name`.

        `numbered`: its key ends `name-<n>` always (True), from the second of its name on
        (None), or never (False: the name is already unique).
        """
        self._made[name] += 1
        count = self._made[name]
        if numbered or (numbered is None and count > 1):
            name = f"{name}-{count}"
        booking = self._booking
        return TherapistNotice(
            key=f"{booking.session_id}/{name}",
            session_id=booking.session_id,
            therapist_id=booking.therapist_id,
            kind=kind,
            priority=priority,
            title=person.client_title(title, booking.client.ref),
        )

    async def tell(self, notice: TherapistNotice, *, in_inbox: bool = False) -> None:
        """The inbox row, and with a roster on file, the notice's delivery until acknowledged.

        The notice is a child workflow with parent-close policy ABANDON: it must outlive
        the session (which closes minutes after a blocked escalation, when follow-up is
        planned), because a notice ends only when a person has acknowledged it; TERMINATE
        or REQUEST_CANCEL would silence the climb exactly when nobody has answered.
        `in_inbox`: the inbox row is already written (the no-show's records do it).
        """
        if not in_inbox:
            await workflow.execute_activity_method(
                TherapistActivities.notify_therapist, notice,
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
            )
        if not self._patches.has(NOTICE_WORKFLOWS):
            return
        if await self.start_climb(notice):
            self.delivering += 1

    async def start_climb(self, notice: TherapistNotice, *,
                          ladder: Callable[[Policy], Policy] | None = None) -> bool:
        """With a roster on file, start the notice workflow that climbs the on-call ladder.

        Returns whether it started (False: no roster loaded, the inbox is all there is).
        `ladder`: the practice's ladder for this notice, made from its policy (the brake's
        page climbs without the therapist's rungs). Its parent-close policy: see `tell`.
        """
        plan = await workflow.execute_activity_method(
            NoticeActivities.plan_notice,
            NoticePlanRequest(notice=notice, risk_tier=self._booking.risk_tier),
            start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
        )
        return await self.climb(notice, plan, ladder=ladder)

    async def told(self, notice: TherapistNotice, plan: NoticePlan | None) -> None:
        """The no-show's alert: its delivery, as `tell` gives it, from what its records did.

        The no-show's records (`AuditActivities.document_no_show`) wrote its inbox row and
        planned its climb (`plan`), in the one activity.
        """
        if await self.climb(notice, plan):
            self.delivering += 1

    async def climb(self, notice: TherapistNotice, plan: NoticePlan | None, *,
                    ladder: Callable[[Policy], Policy] | None = None) -> bool:
        """Start the notice workflow that climbs `plan`'s ladder (None: no roster loaded)."""
        if plan is None:
            return False
        booking = self._booking
        if ladder is not None:
            plan = plan.model_copy(update={"policy": ladder(plan.policy)})
        await workflow.start_child_workflow(
            "NoticeWorkflow",
            NoticeRequest.about(booking, notice, plan),
            id=notice_workflow_id(notice.key),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=attrs.notice_initial(priority=notice.priority.value,
                                                   opened=workflow.now()),
        )
        return True


async def tell_session(news: NoticeNews) -> None:
    """From a notice workflow: tell the session that started it what became of the notice.

    A signal, not a wait: the notice's climb never depends on its session. A session that
    has closed (the notice outlives it) cannot hear it, and needs not: the notice's own
    trail holds the acknowledgment, so the failed signal is let go.
    """
    parent = workflow.info().parent
    if parent is None or not workflow.patched(AWAIT_ACKNOWLEDGMENT):
        return
    session = workflow.get_external_workflow_handle(parent.workflow_id, run_id=parent.run_id)
    try:
        await session.signal(NOTICE_NEWS, news)
    except FailureError:
        workflow.logger.info("notice_news_not_delivered")  # the session has closed
