"""Idle costs nothing: every background loop sleeps when it has nothing to do (issue 22).

Each loop runs for a moment over stand-ins that have nothing for it, and the test counts
how often it looked: once, then asleep. (The kept-text deliverer used to ask PostgreSQL
twice in a tight loop: `seconds_to_next()` said 0, "due now", when nothing was pending.)
The other background work needs no loop of its own: projections are folded into the
statement that appends an event (store/projections.py), and a notice's waits are Temporal
timers in its workflow, which cost nothing while they run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, cast

import asyncpg
import pytest
from temporalio.client import Client

from missed_session.application.kept_texts import KeptTexts
from missed_session.application.service import Application
from missed_session.application.text_deliverer import (
    IDLE_POLL,
    SHORTEST_WAIT,
    TextDeliverer,
    next_wait,
)
from missed_session.audit.archive import HistoryArchiver
from missed_session.channels.simulated import CallbackDispatcher
from missed_session.store.checkpoints import Checkpointer, CheckpointSigner
from missed_session.store.kept_texts import KeptTextStore

MOMENT = 0.6
"""How long each loop runs: long enough to spin thousands of times, were it spinning."""


class Counting:
    """Stands in for a pool (or a store): each call is counted and answers `answer`, or
    what `answers` gives for its name."""

    def __init__(self, answer: Any = None, **answers: Any) -> None:
        self.calls: list[str] = []
        self._answer = answer
        self._answers = answers

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*_: object, **__: object) -> Any:
            self.calls.append(name)
            return self._answers.get(name, self._answer)
        return call


async def run_for(loop: Callable[[], Coroutine[Any, Any, None]],
                  seconds: float = MOMENT) -> None:
    task = asyncio.create_task(loop())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_the_deliverer_sleeps_its_idle_poll_when_nothing_is_pending() -> None:
    assert next_wait(None) == IDLE_POLL.total_seconds()
    assert next_wait(2.0) == 2.0
    assert next_wait(3600.0) == IDLE_POLL.total_seconds()
    # Due now but not claimable (another deliverer holds it): never a spin.
    assert next_wait(0.0) == SHORTEST_WAIT.total_seconds()


class IdleTexts:
    def __init__(self, store: Counting) -> None:
        self._store = store

    async def store(self) -> Counting:
        return self._store


@pytest.mark.parametrize(("seconds_to_next", "most_rounds"), [(None, 1), (0.0, 3)])
async def test_the_deliverer_loop_reads_the_table_once_then_sleeps(
    seconds_to_next: float | None, most_rounds: int,
) -> None:
    store = Counting(seconds_to_next=seconds_to_next)  # claim_due() -> None: nothing due
    deliverer = TextDeliverer(cast(Application, None),
                              kept_texts=cast(KeptTexts, IdleTexts(store)))
    await run_for(deliverer.run)
    rounds = store.calls.count("claim_due")
    assert 1 <= rounds <= most_rounds, store.calls
    assert store.calls.count("seconds_to_next") == rounds


async def test_seconds_to_next_is_none_when_no_text_is_pending(pool: asyncpg.Pool) -> None:
    assert await KeptTextStore(pool).seconds_to_next() is None


async def test_the_callback_dispatcher_sleeps_when_no_call_back_is_owed() -> None:
    pool = Counting([])  # no call-back owed

    async def deliver(session_id: str) -> None:
        raise AssertionError(session_id)

    dispatcher = CallbackDispatcher(cast(asyncpg.Pool, pool), deliver, poll_seconds=5.0)
    await run_for(dispatcher.run)
    assert pool.calls == ["fetch"]


async def test_the_checkpointer_sleeps_its_interval_when_no_trail_grew() -> None:
    pool = Counting([])  # no session gained rows
    checkpointer = Checkpointer(cast(asyncpg.Pool, pool),
                                CheckpointSigner({"k": b"k" * 32}, "k"),
                                interval=timedelta(seconds=60))
    assert await checkpointer.round() == 0
    pool.calls.clear()
    await run_for(checkpointer.run)
    assert pool.calls == ["fetch"]


class NoClosedSessions:
    def __init__(self) -> None:
        self.listed = 0

    def list_workflows(self, query: str) -> AsyncIterator[object]:
        del query
        self.listed += 1

        async def none() -> AsyncIterator[object]:
            nothing: tuple[object, ...] = ()
            for item in nothing:
                yield item
        return none()


async def test_the_history_archiver_sleeps_its_interval_when_no_session_closed() -> None:
    pool, client = Counting([]), NoClosedSessions()
    archiver = HistoryArchiver(cast(Client, client), cast(asyncpg.Pool, pool),
                               interval=timedelta(seconds=60))
    await run_for(archiver.run)
    assert client.listed == 1
    assert len(pool.calls) <= 1
