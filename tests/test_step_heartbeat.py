"""A step's first heartbeat goes after its interval, and a step stopped at once still stops.

Issue 28 item 2: `heartbeating` used to heartbeat the moment a step began, a server write
per step that the bare activity never makes; now the first goes after `every` seconds (the
heartbeat timeout runs from the try's start anyway). A cancellation reaches an activity only
in the answer to a heartbeat, so the case to keep is a step stopped right after it starts:
the first heartbeat (after 2 s) is the SDK's first report to the server and goes at once,
so the step hears of the stop within about 2 s. (Before, the immediate heartbeat opened
the SDK's throttle window, 0.8 of the 10 s heartbeat timeout, and a stop in those first
seconds was heard about 8 s after the start.) Real worker, time-skipping server, embedded
PostgreSQL; the phone is held in flight and, like a provider's request, never heartbeats
itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.heartbeat import HEARTBEAT_SECONDS, heartbeating
from missed_session.channels.simulated import SimulatedPhone
from missed_session.domain.events import OutreachUncertain, read
from missed_session.domain.models import CallResult, Channel, Outcome
from tests.support.outreach_rules import book_with, decision
from tests.support.session_workflow import SENDER, begin, only, placed, trail, types
from worker import new_worker
from workflows.session import SessionWorkflow

SOON = 30.0
"""Real seconds a test waits for something that should take a few."""


class QuietHeldPhone(SimulatedPhone):
    """The simulated phone, each call held in flight until cancelled; it never heartbeats."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.ringing = asyncio.Event()
        self.cancelled_after: float | None = None
        """Real seconds from the call's start to its cancellation."""

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        began = time.monotonic()
        self.ringing.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled_after = time.monotonic() - began
            raise
        raise AssertionError


async def test_a_step_stopped_right_after_it_starts_hears_of_it_within_the_interval(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    phone = QuietHeldPhone(pool)
    session = await book_with(time_skipping_env)
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER, phone=phone):
        handle = await begin(client, task_queue, session)
        result = asyncio.create_task(handle.result())  # lets the server skip to the no-show
        await asyncio.wait_for(phone.ringing.wait(), SOON)

        answer = await asyncio.wait_for(
            handle.execute_update(SessionWorkflow.stand_down, decision()), SOON)
        closed = await asyncio.wait_for(result, SOON)  # waits for the step to have stopped

    assert answer == "recorded: outreach stopped, the session closes as stood_down"
    assert closed.outcome is Outcome.STOOD_DOWN
    assert phone.cancelled_after is not None
    assert phone.cancelled_after < HEARTBEAT_SECONDS + 3  # the first heartbeat's answer
    events = await trail(pool, session.session_id)
    assert read(only(events, "outreach_uncertain")) == OutreachUncertain(
        attempt=1, channel=Channel.CALL, reason="stopped in flight: stand_down")
    assert not {"outreach_attempted", "voicemail_left"} & set(types(events))
    assert await placed(pool, session.session_id) == []


async def test_a_step_done_within_the_interval_sends_no_heartbeat() -> None:
    env = ActivityEnvironment()
    sent: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: sent.append(details)

    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "done"

    async def slow() -> str:
        await asyncio.sleep(0.35)
        return "done"

    assert await env.run(heartbeating, quick(), 3, every=0.1) == "done"
    assert sent == []
    began = time.monotonic()
    at: list[float] = []

    def heartbeat(*details: Any) -> None:
        sent.append(details)
        at.append(time.monotonic() - began)

    env.on_heartbeat = heartbeat
    assert await env.run(heartbeating, slow(), 3, every=0.1) == "done"
    assert sent[0] == (3,)  # the details, as before
    assert 0.09 < at[0] < 0.3  # after the interval, not at once
    assert len(sent) == 3


async def test_an_activity_cancelled_before_its_first_heartbeat_cancels_the_awaited_work(
) -> None:
    env = ActivityEnvironment()
    stopped = asyncio.Event()

    async def held() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    running = asyncio.create_task(env.run(heartbeating, held(), every=10))
    await asyncio.sleep(0.05)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert stopped.is_set()
