"""The simulated phone's call-backs reach the session through Temporal, whatever PostgreSQL does.

A real client's call-back comes through the provider's webhook and a Temporal update, and
does not wait for our database; the simulation must not couple them either. These tests
stop a real embedded PostgreSQL of their own under the dispatcher (the fault suite's
*PostgreSQL stopped [simulated]* does it end to end), and restart a dispatcher, as a new
worker would, between delivering a call-back and recording it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import pytest
from structlog.testing import capture_logs
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from missed_session.channels.simulated import Behaviour, CallbackDispatcher, SimulatedPhone
from missed_session.domain.models import ClientResponse, workflow_id_for
from missed_session.store.database import open_pool
from tests.support.channel_outages import StoppablePostgres, eventually, postgres
from worker import callback_dispatcher

__all__ = ["postgres"]  # the module's stoppable PostgreSQL, shared with the outage tests

CLIENT = "+15555550177"


@pytest.fixture
async def outage_pool(postgres: StoppablePostgres) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(postgres.url, min_size=0, max_size=3)
    yield pool
    await pool.close()


async def owed(pool: asyncpg.Pool, session_id: str) -> bool:
    """Whether PostgreSQL still owes the session its call-back."""
    delivered: bool = await pool.fetchval(
        "SELECT delivered_at IS NULL FROM sim_phone_callbacks WHERE session_id = $1", session_id
    )
    return delivered


async def test_a_call_back_due_while_postgres_is_down_is_delivered_on_time_and_recorded_later(
    postgres: StoppablePostgres, outage_pool: asyncpg.Pool,
) -> None:
    stopped = asyncio.Event()
    delivered: list[tuple[str, bool]] = []

    async def deliver(session_id: str) -> None:
        delivered.append((session_id, stopped.is_set()))

    session_id = f"vm-{uuid.uuid4().hex[:8]}"
    # The store follower's backoff grows to 30 s during the outage (the worker's setting):
    # it must not hold the call-back back.
    dispatcher = CallbackDispatcher(outage_pool, deliver, poll_seconds=0.05,
                                    max_backoff_seconds=30.0)
    phone = SimulatedPhone(outage_pool, callbacks=dispatcher)
    await phone.script(CLIENT, Behaviour.CALLS_BACK, callback_seconds=3)
    with capture_logs() as logs:
        running = asyncio.create_task(dispatcher.run())
        try:
            await phone.leave_voicemail(f"{session_id}/attempt-1/voicemail", session_id,
                                        CLIENT, "hello")
            await asyncio.to_thread(postgres.stop)  # before the call-back falls due
            stopped.set()
            await eventually(lambda: bool(delivered))
            assert any(entry["event"] == "callback_dispatch_failed" for entry in logs)
        finally:
            stopped.clear()
            await asyncio.to_thread(postgres.start)
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while await owed(outage_pool, session_id):  # recorded once PostgreSQL is back
                assert asyncio.get_running_loop().time() < deadline, "never recorded"
                await asyncio.sleep(0.1)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    # Once, while PostgreSQL was down, though the row stayed owed until it was back.
    assert delivered == [(session_id, True)]
    [entry] = [e for e in logs if e["event"] == "callback_delivered"]
    assert set(entry) == {"event", "log_level", "session_id", "answered_seconds_after_due"}


@workflow.defn(name="SessionWorkflow", sandboxed=False)  # a plain counter
class CountingSession:
    """A stand-in under the real workflow's name: counts the call-backs it is told."""

    def __init__(self) -> None:
        self.responses = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.responses > 0)
        await workflow.wait_condition(lambda: False)  # stays open for any second delivery
        return self.responses

    @workflow.update
    async def client_responded(self, response: ClientResponse) -> str:
        self.responses += 1
        return "recorded"

    @workflow.query
    def told(self) -> int:
        return self.responses


class NeverRecords:
    """A pool whose reads work and whose writes never finish: a worker about to die."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fetch(self, *args: Any) -> list[asyncpg.Record]:
        return await self._pool.fetch(*args)

    async def execute(self, *args: Any) -> str:
        del args
        await asyncio.Event().wait()
        return ""


async def test_a_call_back_delivered_by_a_worker_that_died_before_recording_it_is_not_told_twice(
    client: Client, pool: asyncpg.Pool, task_queue: str,
) -> None:
    # Bounded as a whole: a hang here (once seen in a full run, not reproduced alone) fails
    # the test with a traceback instead of stalling the suite.
    async with asyncio.timeout(180):
        await _died_before_recording(client, pool, task_queue)


async def _died_before_recording(client: Client, pool: asyncpg.Pool, task_queue: str) -> None:
    session_id = f"cb-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        "INSERT INTO sim_phone_callbacks (session_id, due_at) VALUES ($1, now())", session_id
    )
    async with Worker(client, task_queue=task_queue, workflows=[CountingSession]):
        handle = await client.start_workflow(CountingSession.run, id=workflow_id_for(session_id),
                                             task_queue=task_queue)
        # The first worker's dispatcher delivers, and dies before it records the delivery
        # (its write to PostgreSQL never lands).
        dying = asyncio.create_task(
            callback_dispatcher(client, cast(asyncpg.Pool, NeverRecords(pool)),
                                poll_seconds=60).run())
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while await handle.query(CountingSession.told) == 0:
                assert asyncio.get_running_loop().time() < deadline, "never delivered"
                await asyncio.sleep(0.1)
        finally:
            dying.cancel()
            done, _ = await asyncio.wait({dying}, timeout=30)
            assert done, "the cancelled dispatcher did not stop"
        assert await owed(pool, session_id)

        # Its successor finds the call-back still owed, delivers it again: Temporal answers
        # the repeated update with the first one's result; the session was told once.
        with capture_logs() as logs:
            assert await callback_dispatcher(client, pool).deliver_due() == 1
        assert not await owed(pool, session_id)
        assert await handle.query(CountingSession.told) == 1
        assert not [e for e in logs if e["event"] == "callback_undeliverable"]
        await handle.terminate("test over")
