"""The baselines: bare workflows with nothing of the service in them.

Default data converter (no pydantic, no encryption), no audit, no search attributes. Each
mirrors one shape of the session workflow so the ratio shows the service's own overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

ACTIVITY_TIMEOUT = timedelta(seconds=30)


@dataclass
class BareActivities:
    """One no-op activity; it notes when each workflow's first call to it began."""

    started: dict[str, float] = field(default_factory=dict)
    completed: int = 0
    on_complete: Callable[[], None] | None = None

    @activity.defn(name="bare_step")
    async def step(self, key: str) -> str:
        self.started.setdefault(key, time.time())
        self.completed += 1
        if self.on_complete is not None:
            self.on_complete()
        return key


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    """Start, one activity, done: the floor under an attended session."""

    @workflow.run
    async def run(self, payload: dict[str, Any]) -> str:
        return str(await workflow.execute_activity(
            "bare_step", workflow.info().workflow_id, result_type=str,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        ))


@workflow.defn(name="BareSleepWorkflow")
class BareSleepWorkflow:
    """Sleep until an instant (epoch seconds), then one activity: the burst baseline."""

    @workflow.run
    async def run(self, at: float) -> str:
        await workflow.sleep(max(0.0, at - workflow.now().timestamp()))
        return str(await workflow.execute_activity(
            "bare_step", workflow.info().workflow_id, result_type=str,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        ))


@workflow.defn(name="BareWaitingWorkflow")
class BareWaitingWorkflow:
    """One activity, then sleep until the start: an open session without the service."""

    @workflow.run
    async def run(self, payload: dict[str, Any]) -> str:
        await workflow.execute_activity(
            "bare_step", workflow.info().workflow_id, result_type=str,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        )
        await workflow.sleep(timedelta(days=1))
        return "done"


@workflow.defn(name="BareLadderWorkflow")
class BareLadderWorkflow:
    """The no-show ladder's side effects and waits, without audit events or state.

    Grace period, therapist alert, `attempts` x (call, voicemail) spaced, escalation call,
    follow-up plan: the activities a no-show must run whoever implements it.
    """

    @workflow.run
    async def run(self, shape: dict[str, float]) -> int:
        grace = timedelta(seconds=shape["grace_seconds"])
        spacing = timedelta(seconds=shape["spacing_seconds"])
        attempts = int(shape["attempts"])
        await workflow.sleep(grace)
        steps = 0
        for name in ("alert",):
            await self._step(name)
            steps += 1
        for attempt in range(1, attempts + 1):
            await self._step(f"call-{attempt}")
            await self._step(f"voicemail-{attempt}")
            steps += 2
            if attempt < attempts:
                await workflow.sleep(spacing)
        await self._step("escalation")
        await self._step("plan")
        return steps + 2

    async def _step(self, name: str) -> str:
        return str(await workflow.execute_activity(
            "bare_step", f"{workflow.info().workflow_id}/{name}", result_type=str,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        ))


BARE_WORKFLOWS = [BareWorkflow, BareSleepWorkflow, BareWaitingWorkflow, BareLadderWorkflow]
