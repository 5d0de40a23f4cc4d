"""Scenario 9: what the stack costs while nothing happens.

The service process is what `dev.py up` runs beside the Temporal dev server and PostgreSQL:
the worker with its followers (call-back dispatcher, history archiver, signed checkpoints)
and the HTTP API with its kept-text deliverer, nothing booked. Its baseline, measured over
the same seconds on the same servers, is a bare Temporal worker polling an empty task queue.
CPU is read from /proc (each thread's run time, in nanoseconds); PostgreSQL's share (every
server process, in ticks: the backends our loops talk to) is reported beside it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from bench.cpu import postgres_cpu_seconds, thread_run_ns, used_seconds
from bench.report import Figure
from bench.scenarios import Shared, Size, service_env
from bench.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
SETTLE = 5.0
"""Seconds the processes get after start-up before the window opens."""
TARGET = "value <= 1"
"""Under 1 % of a core (issue 22)."""


async def _start(kind: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.worker_proc", kind, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT)
    assert process.stdout is not None
    while True:  # the worker prints "running" lines once it polls
        line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        if not line:
            msg = f"the {kind} process exited early"
            raise RuntimeError(msg)
        if json.loads(line)["phase"] == "running":
            break
    asyncio.get_running_loop().create_task(_drain(process))
    return process


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=30)
    if process.returncode is None:
        process.kill()
        await process.wait()


async def measure(stack: Stack, seconds: float, env: dict[str, str]) -> dict[str, float]:
    """Per cent of one core used over `seconds` by the service, PostgreSQL and the baseline."""
    service = await _start("stack", {**env, "BENCH_REPORT_SECONDS": "0"})
    bare = await _start("bare", {"BENCH_ADDRESS": stack.address,
                                 "BENCH_TASK_QUEUE": stack.task_queue("idle-bare"),
                                 "BENCH_REPORT_SECONDS": "0"})
    try:
        await asyncio.sleep(SETTLE)
        service_before, bare_before = thread_run_ns(service.pid), thread_run_ns(bare.pid)
        postgres_before = postgres_cpu_seconds(stack.directory)
        began = time.monotonic()
        await asyncio.sleep(seconds)
        used = (used_seconds(service_before, thread_run_ns(service.pid)),
                used_seconds(bare_before, thread_run_ns(bare.pid)),
                postgres_cpu_seconds(stack.directory) - postgres_before)
        wall = time.monotonic() - began
    finally:
        await asyncio.gather(_stop(service), _stop(bare))
    service_pct, bare_pct, postgres_pct = (100 * seconds_used / wall for seconds_used in used)
    return {"service": service_pct, "bare": bare_pct, "postgres": postgres_pct,
            "seconds": wall}


def figure(measured: dict[str, float]) -> Figure:
    """The row: the service process (API + worker + followers) against a bare worker."""
    return Figure(
        "9 idle", "idle stack CPU over 60 s" if measured["seconds"] >= 59
        else f"idle stack CPU over {measured['seconds']:.0f} s",
        "% of a core", round(measured["service"] + measured["postgres"], 3),
        round(measured["bare"], 6), "bare worker idle", better="lower", target=TARGET,
        note="API + worker + followers, nothing booked; value includes PostgreSQL",
        extra={"service_pct": round(measured["service"], 3),
               "postgres_pct": round(measured["postgres"], 3),
               "bare_pct": round(measured["bare"], 6)})


async def idle(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """Scenario 9: 60 s (smoke: 15 s) of an idle stack next to an idle bare worker."""
    del shared
    url = await stack.new_database()
    env = {**service_env(stack, stack.task_queue("idle"), url),
           "MSR_CHECKPOINT_KEYS": json.dumps({"idle": base64.b64encode(os.urandom(32)).decode()}),
           "MSR_CHECKPOINT_KEY_ID": "idle"}
    return [figure(await measure(stack, 60.0 if size.name == "full" else 15.0, env))]
