"""Every starter.py command leaves with its intended exit code, run after run (issue 10.6).

Short-lived processes that created a Temporal client can abort at interpreter shutdown
(exit 134 or 139, temporalio/sdk-python issue 300); starter.py flushes its output and leaves
with os._exit. Each run here is a real `starter.py` process against the time-skipping
server and a worker in this process. CI runs 20 (MSR_EXIT_CODE_RUNS); the full check is

    MSR_EXIT_CODE_RUNS=200 .venv/bin/python -m pytest tests/test_exit_codes.py -q
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from tests.support.factories import booking_data
from tests.support.starter import future_start, temporal_env  # noqa: F401
from worker import new_worker

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("MSR_EXIT_CODE_RUNS", "20"))
AT_ONCE = 4
"""Processes run side by side: the runs take seconds, not a minute."""


@pytest.fixture
async def running_worker(client: Client, pool: asyncpg.Pool, task_queue: str,
                         temporal_env: None) -> AsyncIterator[None]:  # noqa: F811
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")):
        yield


async def run(*argv: str) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "starter.py"), *argv, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out, err


async def test_each_command_keeps_its_exit_code(
    running_worker: None, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    start = await future_start(time_skipping_env)
    data = booking_data(start=start.isoformat())
    session_id = data["session_id"]
    booking_file = tmp_path / "booking.json"
    booking_file.write_text(json.dumps(data), encoding="utf-8")
    assert (await run("schedule", "--file", str(booking_file)))[0] == 0

    commands: list[tuple[list[str], int, bytes]] = [
        (["schedule", "--file", str(booking_file)], 0, b"already scheduled"),
        (["status", session_id], 0, b"status: scheduled"),
        (["check-in", "s-nobody-here"], 1, b"no session s-nobody-here"),
        (["cancel", session_id, "--reason", "x" * 201], 2, b"reason: "),
    ]
    runs = [commands[number % len(commands)] for number in range(RUNS)]
    wrong: list[str] = []
    slots = asyncio.Semaphore(AT_ONCE)

    async def one(argv: list[str], expected: int, says: bytes) -> None:
        async with slots:
            code, out, err = await run(*argv)
        if code != expected or says not in out + err:
            wrong.append(f"{argv[0]}: exit {code}, expected {expected}: {err[-200:]!r}")

    await asyncio.gather(*(one(*command) for command in runs))
    assert wrong == [], f"{len(wrong)} of {RUNS} runs: {wrong[:5]}"
    # Closed, so no workflow task is left for the shared test server's later time skips.
    assert (await run("cancel", session_id))[0] == 0
