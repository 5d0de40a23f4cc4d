"""The mass no-show brake on the real servers (issue 27, item 1: its done-when sentence).

Two hundred sessions that miss together: no client is contacted until the supervisor
releases (or the high-risk limit passes), the supervisor is paged once with the count, and
every trail records the hold. Three ordinary no-shows are not held. The real worker, the
time-skipping Temporal test server and the embedded PostgreSQL, as in
`tests/test_session_workflow.py`. The decision itself is property-tested in
`tests/test_brake_rules.py`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import asyncpg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notices import notice_workflow_id
from missed_session.application import brake as brake_cases
from missed_session.application.notices import load_roster
from missed_session.application.results import ResultKind
from missed_session.application.service import Application
from missed_session.cli import brake as brake_cli
from missed_session.console import words
from missed_session.domain.models import (
    ClientResponse,
    Modality,
    Outcome,
    ResponseChannel,
    SessionResult,
)
from missed_session.store.audit import AuditStore
from tests.support.brake import (  # noqa: F401 - fixtures, used by name
    GRACE,
    OUTREACH,
    _equals,
    app,
    at_start,
    big_pool,
    count,
    eventually,
    quick,
    sleep_until,
    start_all,
    terminate,
    worker,
)
from workflows.brake import HELD_ALERT

PRACTICE = Path(__file__).resolve().parents[1] / "docs" / "practice.example.toml"


async def test_three_ordinary_no_shows_are_not_held(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: Worker,  # noqa: F811
) -> None:
    env = time_skipping_env
    start = await at_start(env)
    three = [quick(start) for _ in range(3)]
    await start_all(client, task_queue, three)
    await eventually("scheduled", lambda: _equals(count(pool, "scheduled", three), 3))
    await sleep_until(env, start + GRACE + timedelta(seconds=5))
    await eventually("called", lambda: _equals(count(pool, "outreach_attempted", three), 3))
    assert await count(pool, ("brake_held", "brake_released"), three) == 0
    assert await pool.fetchval("SELECT count(*) FROM brake_episodes") == 0
    alert = await pool.fetchval("SELECT title FROM therapist_inbox WHERE key = $1",
                                f"{three[0].session_id}/no-show-alert")
    assert alert.startswith("No-show: outreach to the client has started")
    await terminate(client, three)


async def test_a_stand_down_ends_the_held_sessions_without_client_outreach(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: Worker, app: Application,  # noqa: F811
) -> None:
    env = time_skipping_env
    start = await at_start(env)
    twelve = [quick(start) for _ in range(12)]
    handles = [client.get_workflow_handle(s.workflow_id, result_type=SessionResult)
               for s in twelve]
    await start_all(client, task_queue, twelve)
    await eventually("scheduled", lambda: _equals(count(pool, "scheduled", twelve), 12))
    await sleep_until(env, start + GRACE + timedelta(minutes=1))
    await eventually("held", lambda: _equals(count(pool, "brake_held", twelve), 12))
    # The client of one held session calls the practice: its hold ends, with no outreach.
    answered = ClientResponse(channel=ResponseChannel.CALL, responder="client")
    assert (await app.respond(twelve[0].session_id, answered)).ok
    assert (await handles[0].result()).outcome is Outcome.REACHED
    result = await brake_cases.stand_down(app, "supervisor-maya", reason="check-in outage")
    assert result.kind is ResultKind.APPLIED, result.message
    assert "11 held sessions told" in result.message
    outcomes = await asyncio.gather(*(h.result() for h in handles[1:]))
    assert {o.outcome for o in outcomes} == {Outcome.STOOD_DOWN}
    assert await count(pool, OUTREACH, twelve) == 0
    assert await count(pool, "brake_stood_down", twelve) == 11
    first = [words.describe(e) for e in await AuditStore(pool).trail(twelve[0].session_id)]
    assert "Hold released by brake: outreach had stopped: the client responded" in first
    refused = await brake_cases.release(app, "supervisor-maya")
    assert refused.kind is ResultKind.REFUSED
    alert = await pool.fetchval("SELECT title FROM therapist_inbox WHERE key = $1",
                                f"{twelve[1].session_id}/no-show-alert")
    assert alert.startswith(HELD_ALERT), "the therapist is told, and told why there is no call"
    status = await brake_cases.status(app)
    assert isinstance(status, brake_cases.BrakeStatus)
    shown = brake_cli.render(status)
    assert shown.startswith("episode 1: stood_down; 12 sessions missed within 30 minutes")
    assert "decided by supervisor-maya" in shown
    trail = await AuditStore(pool).trail(twelve[1].session_id)
    said = [words.describe(event) for event in trail]
    assert "Client outreach held: 12 sessions missed within 30 minutes (episode 1)" in said
    assert "Stood down by supervisor-maya while held: check-in outage" in said


async def test_one_modality_missed_together_holds_while_the_rooms_are_full(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: Worker, app: Application,  # noqa: F811
) -> None:
    """The video platform is down: every telehealth session missed, in person all came."""
    env = time_skipping_env
    start = await at_start(env)
    video = [quick(start).model_copy(update={"modality": Modality.TELEHEALTH})
             for _ in range(12)]
    rooms = [quick(start) for _ in range(20)]
    await start_all(client, task_queue, video + rooms)
    await eventually("scheduled", lambda: _equals(count(pool, "scheduled", video + rooms), 32))
    await sleep_until(env, start + timedelta(minutes=1))
    for session in rooms:
        assert (await app.check_in(session.session_id)).ok
    await eventually("attended", lambda: _equals(count(pool, "closed", rooms), 20))
    await sleep_until(env, start + GRACE + timedelta(minutes=1))
    await eventually("held", lambda: _equals(count(pool, "brake_held", video), 12))
    assert await count(pool, OUTREACH, video) == 0
    page = await pool.fetchval("SELECT title FROM therapist_inbox"
                               " WHERE key LIKE '%/brake-episode-%'")
    assert page.startswith("12 telehealth sessions missed within 30 minutes: a video "
                           "platform or check-in outage?")
    await terminate(client, video)


async def test_with_a_roster_the_page_climbs_to_on_call_and_supervisor_not_the_therapist(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: Worker, app: Application,  # noqa: F811
) -> None:
    env = time_skipping_env
    assert (await load_roster(pool, PRACTICE)).kind is ResultKind.APPLIED
    start = await at_start(env)
    ten = [quick(start) for _ in range(10)]
    await start_all(client, task_queue, ten)
    await eventually("scheduled", lambda: _equals(count(pool, "scheduled", ten), 10))
    await sleep_until(env, start + GRACE + timedelta(minutes=1))
    await eventually("held", lambda: _equals(count(pool, "brake_held", ten), 10))
    key = await pool.fetchval("SELECT key FROM therapist_inbox WHERE key LIKE '%/brake-episode-%'")
    notice = client.get_workflow_handle(notice_workflow_id(key))
    view = await notice.query("state")
    assert view["step"] >= 1
    assert view["target"] in {"on_call", "supervisor"}
    assert not any(t.startswith("therapist") for t in view["notified"])
    assert (await brake_cases.release(app, "supervisor-maya")).ok
    await eventually("released", lambda: _equals(count(pool, "brake_released", ten), 10))
    await terminate(client, ten)
    await notice.terminate("test over")


