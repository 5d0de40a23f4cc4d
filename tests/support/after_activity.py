"""Something happens right after a chosen activity did its work, as when a worker dies there.

The side effect is done (a row written, a call placed) and Temporal has not heard of it
yet. What a test makes happen then: the activity's attempt fails, so the activity runs
again (`after_activity` raises); news reaches the session, or the database changes under
another activity held back until then (`after_activity`, `before_activity`); or the
workflow task that ran the chosen local activity fails, once, so the task runs again and
meets what its first try left (`fail_task`). An exception in workflow code fails the task,
not the workflow, as a worker dying there would.

One interceptor for all of them, installed on the Temporal client (`client_with`), so the
unmodified `new_worker` picks it up: a client interceptor is also taken as the worker's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import temporalio.client
import temporalio.worker
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)


class TaskFailedError(RuntimeError):
    """The workflow task 'died' just after the chosen local activity completed."""


class AfterActivity(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """After each run of the activities named, `after_activity`; with `fail_task`, the
    workflow task that ran one of them as a local activity fails once, right after it.

    A test says what its case differs in by overriding: which local activity fails its
    task (`chosen`, by name by default), what to note whenever one starts (`started`), what
    the task does between the activity and its failure (`before_failing`), and what happens
    in the activity worker after a run (`after_activity`).
    """

    def __init__(self, *activity_types: str, fail_task: bool = False) -> None:
        self.activity_types = frozenset(activity_types)
        self.fail_task = fail_task
        self.failed = False
        """The task has failed (once: its retry is let through)."""

    def client_with(self, client: Client) -> Client:
        """The same Temporal client with this interceptor: a worker on it picks it up."""
        config = client.config()
        config["interceptors"] = [self]
        return Client(**config)

    def chosen(self, input: StartLocalActivityInput) -> bool:
        """Whether this local activity is the one after which the task fails."""
        return input.activity in self.activity_types

    def started(self, input: StartLocalActivityInput) -> None:
        """A chosen local activity starts, in workflow code (the failing task or its retry)."""

    async def before_failing(self, next: WorkflowOutboundInterceptor,
                             input: StartLocalActivityInput) -> None:
        """What the failing task does after the activity completed, before it fails."""

    async def before_activity(self, info: activity.Info) -> None:
        """Before a run of a named activity (local or not): a test that orders two
        activities holds the later one here."""

    async def after_activity(self, info: activity.Info) -> None:
        """After a run of a named activity (local or not), before its result is reported;
        raising fails that attempt, as a worker that died before reporting it."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _AfterRun(next, self)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        if not self.fail_task:
            return None
        owner = self

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_FailTask(outbound, owner))

        return Inbound


class _AfterRun(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: AfterActivity) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        named = info.activity_type in self._owner.activity_types
        if named:
            await self._owner.before_activity(info)
        result = await self.next.execute_activity(input)
        if named:
            await self._owner.after_activity(info)
        return result


class _FailTask(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, owner: AfterActivity) -> None:
        super().__init__(next)
        self._owner = owner

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        handle = self.next.start_local_activity(input)
        owner = self._owner
        if not owner.chosen(input):
            return handle
        owner.started(input)
        # Once, and never while replaying: a replayed start completed in a task long done.
        if owner.failed or workflow.unsafe.is_replaying():
            return handle

        async def done_then_task_fails() -> Any:
            await handle
            await owner.before_failing(self.next, input)
            owner.failed = True
            raise TaskFailedError(f"task failed after {input.activity}")

        return asyncio.create_task(done_then_task_fails())  # type: ignore[return-value]
