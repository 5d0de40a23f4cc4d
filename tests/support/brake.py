"""Helpers first written for tests/test_brake.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outreach import Sender
from missed_session.application.service import Application
from missed_session.config import Settings
from missed_session.domain.brake import BrakeSettings
from missed_session.domain.models import AuditEvent, SessionBooking
from missed_session.store.audit import AuditStore
from missed_session.store.database import open_pool
from tests.support.factories import booking, daytime
from tests.support.servers import TEST_KEYS
from worker import new_worker
from workflows.session import SessionWorkflow

SETTINGS = BrakeSettings(window_minutes=30, min_no_shows=10, min_share_percent=50,
                         high_risk_release_minutes=15, release_minutes=240)


GRACE = timedelta(minutes=15)


HIGH_RISK_GRACE = timedelta(minutes=10)


OUTREACH = ("outreach_attempted", "voicemail_left", "message_sent", "outreach_failed",
            "outreach_uncertain", "outreach_skipped", "outreach_deferred", "escalation_sent")
"""Every event of a step that could reach the client or the emergency contact."""


WAIT = 90.0
"""Real seconds a test waits for the worker to get through a burst (a loaded machine)."""


@pytest.fixture
async def big_pool(service_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The worker's own pool: two hundred sessions write at once."""
    pool = await open_pool(service_database_url, min_size=2, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
async def worker(client: Client, big_pool: asyncpg.Pool,
                 task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, big_pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100"), brake=SETTINGS) as running:
        yield running


@pytest.fixture
async def app(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Application]:
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    async with Application(settings, client=client, pool=pool) as application:
        yield application


async def start_all(client: Client, task_queue: str, sessions: list[SessionBooking]) -> None:
    gate = asyncio.Semaphore(25)

    async def one(session: SessionBooking) -> None:
        async with gate:
            await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                        task_queue=task_queue)

    await asyncio.gather(*(one(s) for s in sessions))


async def terminate(client: Client, sessions: list[SessionBooking]) -> None:
    """End the sessions still running: work left on the shared time-skipping server stops
    it skipping time for the next test of the module."""

    async def one(session: SessionBooking) -> None:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(session.workflow_id).terminate("test over")

    await asyncio.gather(*(one(s) for s in sessions))


async def count(pool: asyncpg.Pool, event_types: tuple[str, ...] | str,
                sessions: list[SessionBooking]) -> int:
    kinds = [event_types] if isinstance(event_types, str) else list(event_types)
    value = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE event_type = ANY($1::text[])"
        " AND session_id = ANY($2::text[])", kinds, [s.session_id for s in sessions])
    assert isinstance(value, int)
    return value


async def eventually(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (real time, at most WAIT) for the worker to get there."""
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def sleep_until(env: WorkflowEnvironment, when: datetime) -> None:
    await env.sleep(when - await env.get_current_time())


async def at_start(env: WorkflowEnvironment) -> datetime:
    return daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)


def quick(start: datetime, risk: str = "standard") -> SessionBooking:
    """A session with a one-call protocol (the test is about what comes before it), of a
    practice that runs the brake (its practice file has a `[brake]` table)."""
    return booking(start=start.isoformat(), risk_tier=risk,
                   protocol={"channels": ["call"], "max_attempts": 1, "no_show_brake": True})


async def _events(pool: asyncpg.Pool, kind: str,
                  sessions: list[SessionBooking]) -> list[AuditEvent]:
    store = AuditStore(pool)
    return [event for session in sessions for event in await store.trail(session.session_id)
            if event.event_type.value == kind]


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _at_least(value: Awaitable[int], expected: int) -> bool:
    return await value >= expected

