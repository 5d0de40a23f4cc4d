"""The therapist did not come: the session's client outreach stands down, the practice is told.

A scheduler that reports a *host* no-show (Cal.com `AFTER_HOSTS_CAL_VIDEO_NO_SHOW` or
`noShowHost`, an FHIR Appointment whose Practitioner participant did not attend) reports the
practice's absence, not the client's: no client may be called for it. This use case carries
it through the session workflow's existing messages, chosen by where the session is:

- before its no-show (scheduled, waiting): `cancel`, with the reason in the trail, so the
  grace period never expires into outreach;
- during outreach (no-show, outreach, escalation): `stand_down` with the reason, recorded
  as decided by the scheduler's feed (`scheduler:<source>`), not by a clinician;
- in follow-up: `add_note` (outreach is already over);
- closed: nothing to stand down; refused with the reason.

Then the practice is told: a notice (an urgent alert) that climbs the roster's on-call
ladder *without* the absent therapist (on call, then the clinical supervisor). Without a
roster loaded there is nobody to page, and the answer says so.

The practice setting `hold` (keep the session for a clinician's decision instead of
standing down) needs a workflow message that holds outreach and one that releases it; the
workflow has neither, so only `stand_down` is offered (see docs/integration-standards.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.contracts.notices import NoticePlan, NoticeRequest, notice_workflow_id
from missed_session.domain.models import (
    Cancellation,
    ClinicianDecision,
    DecisionKind,
    NoticeKind,
    Priority,
    SessionBooking,
    SessionStatus,
    TherapistNotice,
)
from missed_session.domain.notices import Policy, Step, Target
from missed_session.store.notices import RosterStore
from missed_session.temporal import search_attributes as attrs

NOTICE_NAME = "therapist-absent"
"""The notice's name within its session: `<session id>/therapist-absent`."""


@dataclass(frozen=True)
class Absence:
    """What the scheduler reported."""

    session_id: str
    """The session whose therapist did not come."""
    source: str
    """Which feed said so (calcom, calendly, fhir): named in the trail."""
    what: str
    """The scheduler's words for it, safe to store (no names, no addresses)."""


def reason(absence: Absence) -> str:
    """The reason the trail carries."""
    return (f"the therapist did not attend ({absence.what}, reported by "
            f"{absence.source}): no client outreach for this session")


async def therapist_absent(app: Application, absence: Absence) -> Result:
    """Stand the session's client outreach down and tell the practice; what was done."""
    session_id = absence.session_id
    status = await app.status(session_id)
    if status.kind is not ResultKind.APPLIED or status.state is None:
        return status
    stood_down = await _stand_down(app, absence, status.state.status)
    if stood_down.kind is ResultKind.REFUSED:
        # The session moved on between the question and the message (the grace period
        # expired just then): ask again and use the message for where it is now.
        again = await app.status(session_id)
        if again.kind is ResultKind.APPLIED and again.state is not None:
            stood_down = await _stand_down(app, absence, again.state.status)
    if not stood_down.ok:
        return stood_down
    told = await _tell_the_practice(app, absence)
    return Result(ResultKind.APPLIED, f"session {session_id}: {stood_down.message}; {told}",
                  session_id)


async def _stand_down(app: Application, absence: Absence, status: SessionStatus) -> Result:
    session_id = absence.session_id
    why = reason(absence)
    by = f"scheduler:{absence.source}"
    if status in {SessionStatus.SCHEDULED, SessionStatus.WAITING}:
        result = await app.cancel(session_id, Cancellation(reason=why[:200]))
        done = "cancelled before any client outreach (the trail gives the reason)"
    elif status in {SessionStatus.NO_SHOW, SessionStatus.HELD, SessionStatus.OUTREACH,
                    SessionStatus.ESCALATION}:
        result = await app.decide(session_id, DecisionKind.STAND_DOWN,
                                  ClinicianDecision(clinician_id=by, reason=why[:500]))
        done = "client outreach stood down at once (the trail gives the reason)"
    elif status is SessionStatus.FOLLOW_UP:
        result = await app.decide(session_id, DecisionKind.ADD_NOTE,
                                  ClinicianDecision(clinician_id=by, reason=why[:500]))
        done = "outreach had already ended; the absence is noted in the trail"
    else:
        return Result(ResultKind.REFUSED, f"session {session_id} has already closed: "
                      "the therapist's absence cannot change it", session_id)
    if not result.ok:
        return result
    return Result(ResultKind.APPLIED, done, session_id)


async def _tell_the_practice(app: Application, absence: Absence) -> str:
    """Start the notice to the on-call clinician and the supervisor; what became of it."""
    try:
        pool = await app.pool()
        client = await app.temporal()
        sessions = await app.sessions()
        booking = await sessions.booking(absence.session_id)
    except (UnavailableError, RPCError, OSError, asyncpg.PostgresError) as error:
        return f"the practice could not be told now ({type(error).__name__}): tell them"
    if booking is None:
        return "the practice could not be told: the session's booking could not be read"
    try:
        plan = await _plan(pool, booking)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return f"the practice could not be told now ({type(error).__name__}): tell them"
    if plan is None:
        return ("no roster is loaded, so no notice could be sent: tell the on-call "
                "clinician yourself")
    notice = notice_for(booking)
    return await _start_notice(client, app.settings.task_queue, notice, booking, plan)


def notice_for(booking: SessionBooking) -> TherapistNotice:
    """The urgent alert about the absent therapist (client ref only, no name)."""
    return TherapistNotice(
        key=f"{booking.session_id}/{NOTICE_NAME}", session_id=booking.session_id,
        therapist_id=booking.therapist_id, kind=NoticeKind.ALERT, priority=Priority.URGENT,
        title=(f"Therapist {booking.therapist_id} did not attend; client outreach stood "
               f"down: check on the client (client {booking.client.ref})"))


def without_the_therapist(policy: Policy) -> Policy:
    """The ladder without its therapist rungs: the therapist is the one who is absent."""
    steps = tuple(step for step in policy.steps if step.notify is not Target.THERAPIST)
    if not steps:
        steps = (Step(notify=Target.ON_CALL, minutes=10),
                 Step(notify=Target.SUPERVISOR, minutes=15))
    return policy.model_copy(update={"name": f"{policy.name}-without-therapist"[:40],
                                     "steps": steps})


async def _plan(pool: asyncpg.Pool, booking: SessionBooking) -> NoticePlan | None:
    current = await RosterStore(pool).current()
    if current is None or current.roster is None:
        return None
    rules = current.notices
    return NoticePlan(
        policy=without_the_therapist(rules.policy_for(Priority.URGENT, booking.risk_tier)),
        include_first_name=rules.include_first_name, ack_code_hours=rules.ack_code_hours,
        roster_version=current.version)


async def _start_notice(client: Client, task_queue: str, notice: TherapistNotice,
                        booking: SessionBooking, plan: NoticePlan) -> str:
    request = NoticeRequest.about(booking, notice, plan)
    climb = ", then ".join(step.notify.value.replace("_", "-") for step in plan.policy.steps)
    try:
        await client.start_workflow(
            "NoticeWorkflow", request, id=notice_workflow_id(notice.key), task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=attrs.notice_initial(priority=notice.priority.value,
                                                   opened=datetime.now(UTC)))
    except WorkflowAlreadyStartedError:
        return f"the practice was already told (notice {notice.key})"
    except RPCError as error:
        return f"the practice could not be told now ({type(error).__name__}): tell them"
    return f"the practice is told: notice {notice.key} to the {climb}"
