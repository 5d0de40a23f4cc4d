"""A session nobody has acknowledged does not close as final (issue 26, item 1), end to end.

The real worker on the time-skipping server, with a roster loaded so that notices climb the
on-call ladder (the default high-risk policy: the therapist, 5 minutes, the on-call
clinician, 5 minutes, the supervisor, 10 minutes). A high-risk client misses the session and
is not reached (one attempt; the emergency contact is told): the outcome would be
`unreachable_escalated`, but no clinician has acknowledged anything, so the session awaits
one. (A client back in touch needs no acknowledgment: the notices' reason ended, they
resolve and everyone told hears so; tests/test_notices_reason.py.) Its no-show alert runs
out of steps; the policy's minutes later a fresh urgent task climbs the ladder again; an
acknowledgment (or a decision) closes the session with its outcome; nobody at all closes it
after the protocol's hours, recorded as timed out. The pure rules are in
`tests/test_awaiting_clinician.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.notices import notice_workflow_id
from activities.outreach import Sender
from missed_session.application import ResultKind
from missed_session.application import notices as use
from missed_session.domain import events
from missed_session.domain.models import (
    AuditEvent,
    ClinicianDecision,
    Outcome,
    SessionBooking,
    SessionResult,
    SessionStatus,
)
from missed_session.domain.notices import Acknowledgment, AckVia
from missed_session.domain.roster_file import parse_roster
from missed_session.store.audit import AuditStore
from missed_session.store.notices import NoticeStore, RosterStore
from missed_session.temporal import search_attributes as attrs
from tests.support.factories import booking, daytime
from tests.support.notices import ROSTER
from tests.support.servers import start_test_server
from worker import new_worker
from workflows.session import SessionWorkflow

NO_SHOW = timedelta(minutes=10)
"""The high-risk grace period."""
WAITING = timedelta(minutes=15)
"""After the only attempt and the escalation: the session awaits a clinician."""
ALERT_RUNS_OUT = NO_SHOW + timedelta(minutes=20)
"""The no-show alert's ladder: 5 + 5 + 10 minutes, nobody acknowledging."""
CLIMBS_AGAIN = ALERT_RUNS_OUT + timedelta(minutes=5)
"""The policy's minutes (its first rung's) after the run-out."""

Handle = WorkflowHandle[SessionWorkflow, SessionResult]


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server per test, not per module: notices outlive their session, and one left
    climbing with its worker gone would keep a shared server from skipping time."""
    env = await start_test_server()
    yield env
    await env.shutdown()


SHORT_LADDER = ROSTER + """
[[notices.policies]]
name = "short"
steps = [{ notify = "therapist", minutes = 2 }]
"""
"""The same practice with one two-minute rung for every notice: a notice runs out early."""


@pytest.fixture
def practice() -> str:
    """The practice file's roster and notices (a test may parametrize another)."""
    return ROSTER


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str,
                 practice: str) -> AsyncIterator[None]:
    loaded = parse_roster(practice, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")):
        yield


async def sleep_until(env: WorkflowEnvironment, when: datetime) -> None:
    await env.sleep(when - await env.get_current_time())


async def trail(pool: asyncpg.Pool, session_id: str) -> list[AuditEvent]:
    found = await AuditStore(pool).trail(session_id)
    assert [event.sequence for event in found] == list(range(1, len(found) + 1))
    return found


def types(found: list[AuditEvent]) -> list[str]:
    return [event.event_type.value for event in found]


async def unreached_high_risk(env: WorkflowEnvironment, client: Client, task_queue: str,
                              **protocol: int) -> tuple[SessionBooking, Handle]:
    """A high-risk session whose client was not reached; nobody acknowledged anything."""
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session = booking(start=start.isoformat(), risk_tier="high",
                      protocol={"max_attempts": 1, **protocol})
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    await sleep_until(env, start + WAITING)
    state = await handle.query(SessionWorkflow.state)
    assert state.status is SessionStatus.AWAITING_CLINICIAN
    assert state.next_action is not None
    assert state.next_action.startswith("nobody acknowledged: a high-risk session")
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(attrs.SESSION_STATUS) == "awaiting_clinician"
    return session, handle


@pytest.mark.usefixtures("worker")
async def test_a_high_risk_session_awaits_an_acknowledgment_and_its_ladder_climbs_again(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    env = time_skipping_env
    session, handle = await unreached_high_risk(env, client, task_queue)
    alert = f"{session.session_id}/no-show-alert"
    again = f"{session.session_id}/nobody-acknowledged-1"

    # The alert runs out with nobody acknowledging: the session hears it, and waits on.
    await sleep_until(env, session.start + ALERT_RUNS_OUT + timedelta(seconds=30))
    assert (await NoticeStore(pool).get(alert)).state == "exhausted"  # type: ignore[union-attr]
    assert "notice_ran_out" in types(await trail(pool, session.session_id))
    assert await NoticeStore(pool).get(again) is None

    # The policy's minutes later, a fresh urgent task climbs the ladder from the therapist.
    await sleep_until(env, session.start + CLIMBS_AGAIN + timedelta(seconds=30))
    renewed = await NoticeStore(pool).get(again)
    assert renewed is not None
    assert (renewed.state, renewed.priority, renewed.kind) == ("open", "urgent", "task")
    described = await client.get_workflow_handle(notice_workflow_id(again)).describe()
    assert described.typed_search_attributes.get(attrs.NOTICE_TARGET) == "therapist"
    assert (await handle.query(SessionWorkflow.state)).status is SessionStatus.AWAITING_CLINICIAN

    # The therapist acknowledges the fresh task: a person has it, the session closes.
    acked = await use.acknowledge(client, pool, again,
                                  Acknowledgment(via=AckVia.CLI, clinician_id="t-ana"))
    assert acked.kind is ResultKind.APPLIED, acked.message
    result = await handle.result()
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    found = await trail(pool, session.session_id)
    tail = types(found)[types(found).index("escalation_sent"):]
    # The therapist's alert of the emergency call (notices-track-reason) ran out too.
    assert tail == ["escalation_sent", "awaiting_clinician", "notice_ran_out", "notice_ran_out",
                    "notice_renewed", "clinician_acknowledged", "plan_created", "closed"]
    ran_out = [events.read(event) for event in found if event.event_type.value == "notice_ran_out"]
    assert ran_out == [
        events.NoticeRanOut(notice=alert, again_after_minutes=5),
        events.NoticeRanOut(notice=f"{session.session_id}/emergency-contact-called",
                            again_after_minutes=5),
    ]
    read = {event.event_type.value: events.read(event) for event in found}
    assert read["notice_renewed"] == events.NoticeRenewed(notice=again, round=1)
    assert read["clinician_acknowledged"] == events.ClinicianAcknowledged(
        notice=again, clinician_id="t-ana")
    waited = {event.event_type.value: event.occurred_at for event in reversed(found)}
    assert (timedelta(minutes=5) <= waited["notice_renewed"] - waited["notice_ran_out"]
            < timedelta(minutes=5, seconds=1))
    assert "clinician_wait_timed_out" not in types(found)


@pytest.mark.usefixtures("worker")
async def test_a_note_of_what_was_done_ends_the_wait_as_an_acknowledgment_does(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    session, handle = await unreached_high_risk(time_skipping_env, client, task_queue)

    await handle.execute_update(SessionWorkflow.add_note, ClinicianDecision(
        clinician_id="oc-lee", reason="spoke with the client; next session booked"))

    assert (await handle.result()).outcome is Outcome.UNREACHABLE_ESCALATED
    found = types(await trail(pool, session.session_id))
    assert found[-4:] == ["awaiting_clinician", "clinician_decision", "plan_created", "closed"]


@pytest.mark.usefixtures("worker")
async def test_nobody_ever_acknowledging_closes_after_the_protocols_hours_climbing_meanwhile(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    session, handle = await unreached_high_risk(time_skipping_env, client, task_queue,
                                                clinician_wait_hours=1)

    result = await handle.result()

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    found = await trail(pool, session.session_id)
    kinds = types(found)
    waited = next(e for e in found if e.event_type.value == "awaiting_clinician")
    timed_out = next(e for e in found if e.event_type.value == "clinician_wait_timed_out")
    assert timedelta(hours=1) <= timed_out.occurred_at - waited.occurred_at < timedelta(
        hours=1, seconds=1)
    assert events.read(timed_out) == events.ClinicianWaitTimedOut(
        waited_hours=1, outcome=Outcome.UNREACHABLE_ESCALATED)
    # Within the hour: the alert ran out at 30 min, a fresh round at 35 ran out at 55, and
    # another began at 60: each round climbs only once the previous one ran out.
    assert kinds.count("notice_renewed") == 2
    # The alert, the first fresh round, and the therapist's alert of the emergency call.
    assert kinds.count("notice_ran_out") == 3
    assert "clinician_acknowledged" not in kinds
    assert kinds[-3:] == ["clinician_wait_timed_out", "plan_created", "closed"]


@pytest.mark.parametrize("practice", [SHORT_LADDER])
@pytest.mark.usefixtures("worker")
async def test_a_standard_session_whose_notice_ran_out_awaits_a_person_before_it_closes(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    """Any risk tier: the no-show alert ran out during outreach, so nobody knows."""
    env = time_skipping_env
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session = booking(start=start.isoformat(), protocol={"max_attempts": 2})
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    grace, spacing = timedelta(minutes=15), timedelta(minutes=15)
    # The alert runs out two minutes after the no-show; the last attempt is later.
    await sleep_until(env, start + grace + spacing + timedelta(minutes=1))
    state = await handle.query(SessionWorkflow.state)
    assert state.status is SessionStatus.AWAITING_CLINICIAN
    assert state.next_action is not None
    assert "nobody acknowledged: the session's notices ran out" in state.next_action
    again = f"{session.session_id}/nobody-acknowledged-1"
    assert (await NoticeStore(pool).get(again)).state == "open"  # type: ignore[union-attr]

    acked = await use.acknowledge(client, pool, again,
                                  Acknowledgment(via=AckVia.CLI, clinician_id="t-ana"))
    assert acked.kind is ResultKind.APPLIED, acked.message

    assert (await handle.result()).outcome is Outcome.UNREACHABLE_ESCALATED
    kinds = types(await trail(pool, session.session_id))
    assert kinds.index("notice_ran_out") < kinds.index("escalation_sent")
    assert kinds[kinds.index("escalation_sent"):] == [
        "escalation_sent", "awaiting_clinician", "notice_renewed", "clinician_acknowledged",
        "plan_created", "closed",
    ]
