"""The worker's sandbox compiles a workflow module once and still isolates every run.

The sandbox re-imports the workflow module for every workflow it creates; the worker's
runner hands that import the code compiled the first time instead of compiling (and keeping)
a copy per cached workflow. These tests pin down that only the code is shared: each run
still gets its own module, its own class and the sandbox's restricted names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import ClassVar

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.support.sandbox_probe import ProbeWorkflow
from worker import WORKFLOW_RUNNER
from workflows.session import SessionWorkflow


class RecordingRunner(WorkflowRunner):
    """Runs inside the sandbox (passed through) and notes the workflow class it was given."""

    classes: ClassVar[list[type]] = []

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        """Nothing to prepare."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        RecordingRunner.classes.append(det.defn.cls)
        return UnsandboxedWorkflowRunner().create_instance(det)


def sandboxed_classes(runner: SandboxedWorkflowRunner, cls: type, count: int) -> list[type]:
    """The workflow classes `count` sandboxes of this runner import (kept alive together)."""
    recording = dataclasses.replace(
        runner,
        runner_class=RecordingRunner,
        restrictions=runner.restrictions.with_passthrough_modules(__name__),
    )
    RecordingRunner.classes.clear()
    for _ in range(count):
        recording.prepare_workflow(workflow._Definition.must_from_class(cls))
    return list(RecordingRunner.classes)


async def test_sandboxes_share_the_session_workflows_compiled_code() -> None:
    first, second = sandboxed_classes(WORKFLOW_RUNNER, SessionWorkflow, 2)
    assert first is not SessionWorkflow
    assert first is not second
    assert first.run.__code__ is second.run.__code__  # type: ignore[attr-defined]


async def test_the_plain_sandbox_compiles_the_module_again_for_every_workflow() -> None:
    """Why the worker's runner exists: one copy of the module's code per cached workflow."""
    plain = SandboxedWorkflowRunner(restrictions=WORKFLOW_RUNNER.restrictions)
    first, second = sandboxed_classes(plain, SessionWorkflow, 2)
    assert first.run.__code__ is not second.run.__code__  # type: ignore[attr-defined]


async def test_each_sandbox_still_has_its_own_module_and_restricted_names() -> None:
    first, second = sandboxed_classes(WORKFLOW_RUNNER, ProbeWorkflow, 2)
    first_module = first.run.__globals__  # type: ignore[attr-defined]
    second_module = second.run.__globals__  # type: ignore[attr-defined]
    assert first_module is not second_module
    assert first_module["RUNS"] is not second_module["RUNS"]
    assert first_module["datetime"] is not dt.datetime  # the sandbox's restricted view


async def test_runs_share_no_module_state_and_the_clock_stays_forbidden(client: Client) -> None:
    task_queue = f"tq-{uuid.uuid4().hex}"
    async with Worker(client, task_queue=task_queue, workflows=[ProbeWorkflow],
                      workflow_runner=WORKFLOW_RUNNER):
        for _ in range(2):
            runs = await client.execute_workflow(ProbeWorkflow.run, False,
                                                 id=f"probe-{uuid.uuid4().hex}",
                                                 task_queue=task_queue)
            assert runs == 1
        with pytest.raises(WorkflowFailureError) as failure:
            await client.execute_workflow(ProbeWorkflow.run, True,
                                          id=f"probe-{uuid.uuid4().hex}",
                                          task_queue=task_queue)
    assert "datetime.datetime.now" in str(failure.value.cause)
