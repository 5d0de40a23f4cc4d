"""PostgreSQL stopping under the channels: an outage is waited out, never counted, never fatal.

These tests stop and start a real embedded PostgreSQL of their own (not the session's
shared one), under the simulated phone's call-back dispatcher and under outreach steps
that go through the delivery ledger.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from structlog.testing import capture_logs
from temporalio.client import Client
from temporalio.service import RetryConfig

from missed_session.channels.simulated import CallbackDispatcher
from missed_session.store.database import open_pool
from tests.support.channel_outages import (
    StoppablePostgres,
    eventually,
    postgres,  # noqa: F401 - fixtures, used by name
)
from tests.support.outreach_activity import (
    PROVIDER_TRIES,
    PracticeSystem,
    ledger_row,
    practice,
    run_step,
    text_step,
)
from worker import callback_dispatcher

__all__ = ["practice"]  # the fixture, shared with the activity tests


@pytest.fixture
async def outage_pool(postgres: StoppablePostgres) -> AsyncIterator[asyncpg.Pool]:  # noqa: F811
    pool = await open_pool(postgres.url, min_size=1, max_size=3)
    yield pool
    await pool.close()


async def add_callback(pool: asyncpg.Pool, session_id: str) -> None:
    await pool.execute(
        "INSERT INTO sim_phone_callbacks (session_id, due_at) VALUES ($1, now())", session_id
    )


async def test_the_callback_dispatcher_survives_postgres_stopping_and_logs_it(
    postgres: StoppablePostgres, outage_pool: asyncpg.Pool,  # noqa: F811
) -> None:
    delivered: list[str] = []

    async def deliver(session_id: str) -> None:
        delivered.append(session_id)

    before, after = f"before-{uuid.uuid4().hex[:8]}", f"after-{uuid.uuid4().hex[:8]}"
    dispatcher = CallbackDispatcher(outage_pool, deliver, poll_seconds=0.05,
                                    max_backoff_seconds=0.4)
    with capture_logs() as logs:
        running = asyncio.create_task(dispatcher.run())
        try:
            await add_callback(outage_pool, before)
            await eventually(lambda: before in delivered)

            await asyncio.to_thread(postgres.stop)
            await eventually(lambda: any(
                entry["event"] == "callback_dispatch_failed" for entry in logs
            ))
            await asyncio.sleep(1.0)  # several failed polls, backing off
            assert not running.done()

            await asyncio.to_thread(postgres.start)
            await add_callback(outage_pool, after)
            await eventually(lambda: after in delivered)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    assert delivered == [before, after]  # each once
    failures = [entry for entry in logs if entry["event"] == "callback_dispatch_failed"]
    assert len(failures) >= 2
    waits = [entry["retry_in_seconds"] for entry in failures]
    assert waits == sorted(waits)  # backing off
    assert max(waits) <= 0.4
    assert all(set(entry) <= {"event", "log_level", "error_type", "retry_in_seconds"}
               for entry in failures)  # the error's type only: nothing about a session
    assert any(entry["event"] == "callback_dispatch_recovered" for entry in logs)


async def test_an_outage_while_a_step_is_claimed_is_waited_out_and_not_counted(
    client: Client, postgres: StoppablePostgres, outage_pool: asyncpg.Pool,  # noqa: F811
    practice: tuple[PracticeSystem, str],
) -> None:
    system, url = practice
    step = text_step(f"outage-{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(postgres.stop)
    with capture_logs() as logs:
        running = asyncio.create_task(run_step(client, outage_pool, url, step))
        # More failed tries than the provider may fail: an outage is not the provider's.
        await eventually(lambda: sum(
            entry["event"] == "outreach_store_unreachable" for entry in logs
        ) > PROVIDER_TRIES)
        await asyncio.to_thread(postgres.start)
        await asyncio.wait_for(running, timeout=30)
    assert len(system.requests) == 1
    assert await ledger_row(outage_pool, step) == ("done", "sent")


async def test_an_outage_after_the_provider_answered_is_waited_out_before_settling(
    client: Client, postgres: StoppablePostgres, outage_pool: asyncpg.Pool,  # noqa: F811
    practice: tuple[PracticeSystem, str],
) -> None:
    # PostgreSQL stops while the provider is sending: the answer cannot be recorded until it
    # is back. The step waits (heartbeating), records it, and reports it delivered; it does
    # not leave the step pending for a retry to call uncertain.
    system, url = practice
    step = text_step(f"settle-{uuid.uuid4().hex[:8]}")
    restarted: list[asyncio.Task[None]] = []

    async def stop_then_restart() -> None:
        await asyncio.sleep(2.5)  # longer than the heartbeat timeout
        await asyncio.to_thread(postgres.start)

    async def stop_postgres() -> None:
        await asyncio.to_thread(postgres.stop)
        restarted.append(asyncio.create_task(stop_then_restart()))

    system.while_sending = stop_postgres
    with capture_logs() as logs:
        await asyncio.wait_for(run_step(client, outage_pool, url, step), timeout=30)
    await asyncio.gather(*restarted)
    assert len(system.requests) == 1
    assert await ledger_row(outage_pool, step) == ("done", "sent")
    assert any(entry["event"] == "delivery_ledger_unreachable" for entry in logs)


async def test_a_callback_for_a_session_that_is_over_is_dropped_one_temporal_cannot_take_kept(
    client: Client, pool: asyncpg.Pool,
) -> None:
    gone, kept = f"gone-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    await add_callback(pool, gone)
    with capture_logs() as logs:
        assert await callback_dispatcher(client, pool).deliver_due() == 1
    assert [entry["event"] for entry in logs] == ["callback_undeliverable"]
    assert await pool.fetchval(
        "SELECT delivered_at IS NOT NULL FROM sim_phone_callbacks WHERE session_id = $1", gone
    )

    # Temporal unreachable (nothing listening): the call-back waits for a later poll.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    unreachable = await Client.connect(dead, lazy=True, data_converter=client.data_converter,
                                       retry_config=RetryConfig(max_retries=0))
    await add_callback(pool, kept)
    with pytest.raises(RuntimeError, match="connect"):
        await callback_dispatcher(unreachable, pool).deliver_due()
    assert not await pool.fetchval(
        "SELECT delivered_at IS NOT NULL FROM sim_phone_callbacks WHERE session_id = $1", kept
    )
