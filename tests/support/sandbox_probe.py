"""A workflow module for tests/test_worker_sandbox.py: module state, a restricted name.

Imported by the sandbox as a workflow module, so it imports nothing but the standard library
and temporalio (both passed through).
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import workflow
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

RUNS: list[str] = []
"""Module state: each sandbox has its own, so every run sees only itself."""


@workflow.defn(failure_exception_types=[RestrictedWorkflowAccessError])
class ProbeWorkflow:
    """Counts its module's runs; asked to, reads the wall clock (which the sandbox refuses)."""

    @workflow.run
    async def run(self, read_the_clock: bool) -> int:
        RUNS.append(workflow.info().workflow_id)
        if read_the_clock:
            datetime.now(UTC)
        return len(RUNS)
