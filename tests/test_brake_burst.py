"""Two hundred sessions that miss together (issue 27, item 1: its done-when sentence).

No client is contacted until the supervisor releases (or the high-risk limit passes), the
supervisor is paged once with the count, and every trail records the hold. A module of its
own: it has its own time-skipping server, so the sessions it leaves running (terminated at
its end) cannot hold back the clock of another test. Helpers: `tests/test_brake.py`.
"""

from __future__ import annotations

import time
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from missed_session.application import brake as brake_cases
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application
from missed_session.domain.events import BrakeHeld, BrakeReleased, read
from missed_session.store.audit import AuditStore
from tests.support.brake import (
    GRACE,
    HIGH_RISK_GRACE,
    OUTREACH,
    SETTINGS,
    _at_least,
    _equals,
    _events,
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

__all__ = ["app", "big_pool", "worker"]  # the fixtures, shared


async def test_two_hundred_sessions_missed_together_wait_for_the_supervisor(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: Worker, app: Application,
) -> None:
    env = time_skipping_env
    began = time.monotonic()
    start = await at_start(env)
    high = [quick(start, "high") for _ in range(10)]
    standard = [quick(start) for _ in range(190)]
    everyone = high + standard
    await start_all(client, task_queue, everyone)
    await eventually("every session scheduled",
                     lambda: _equals(count(pool, "scheduled", everyone), 200))

    # Every grace period passes together (the high-risk ones five minutes earlier).
    await sleep_until(env, start + GRACE + timedelta(minutes=1))
    await eventually("every session held",
                     lambda: _equals(count(pool, "brake_held", everyone), 200))
    assert await count(pool, OUTREACH, everyone) == 0, "a client was contacted while held"
    assert await count(pool, ("grace_period_expired", "therapist_alerted"), everyone) == 400, \
        "the therapists' no-show alerts are not held"
    page = await pool.fetch("SELECT key, title, priority FROM therapist_inbox"
                            " WHERE key LIKE '%/brake-episode-%'")
    assert len(page) == 1, "the supervisor is paged once per episode"
    assert page[0]["title"].startswith("200 sessions missed within 30 minutes: a scheduler "
                                       "or check-in outage?")
    assert page[0]["priority"] == "urgent"
    held = [read(e) for e in await _events(pool, "brake_held", everyone)]
    assert all(isinstance(h, BrakeHeld) and h.episode == "1" for h in held)
    assert sum(1 for h in held if isinstance(h, BrakeHeld) and h.paged) == 1

    # The high-risk limit passes: those ten proceed, nobody else does.
    await sleep_until(env, start + HIGH_RISK_GRACE + timedelta(minutes=SETTINGS
                      .high_risk_release_minutes + 1))
    await eventually("the high-risk holds released",
                     lambda: _equals(count(pool, "brake_released", high), 10))
    await eventually("the high-risk sessions called",
                     lambda: _at_least(count(pool, "outreach_attempted", high), 10))
    assert await count(pool, OUTREACH, standard) == 0
    released = [read(e) for e in await _events(pool, "brake_released", high)]
    assert all(isinstance(r, BrakeReleased) and r.by == "brake" for r in released)

    # The supervisor releases one session, then the rest: outreach proceeds.
    one = standard[0]
    assert (await brake_cases.release(app, "supervisor-maya", session_id=one.session_id)).ok
    await eventually("one session called",
                     lambda: _equals(count(pool, "outreach_attempted", [one]), 1))
    assert await count(pool, OUTREACH, standard[1:]) == 0
    status = await brake_cases.status(app)
    assert isinstance(status, brake_cases.BrakeStatus)
    states = [s.state for s in status.held["1"]]
    assert states.count("held") == 189
    assert states.count("released") == 11
    result = await brake_cases.release(app, "supervisor-maya", reason="outage confirmed over")
    assert isinstance(result, Result)
    assert result.kind is ResultKind.APPLIED, result.message
    assert "189 held sessions told" in result.message
    await eventually("every hold released",
                     lambda: _equals(count(pool, "brake_released", everyone), 200))
    await eventually("every standard session called",
                     lambda: _equals(count(pool, "outreach_attempted", standard), 190))
    trail = await AuditStore(pool).trail(standard[-1].session_id)
    kinds = [e.event_type.value for e in trail]
    assert kinds[1:6] == ["grace_period_expired", "therapist_alerted", "brake_held",
                          "brake_released", "outreach_attempted"]
    print(f"\n200 held and released in {time.monotonic() - began:.1f} s")
    await terminate(client, everyone)
