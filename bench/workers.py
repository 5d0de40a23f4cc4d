"""Scenario 8, several workers: attended and burst with one and with two worker processes.

`python -m bench --size full --only workers`. Unlike scenarios 1 and 3 (workers in the
benchmark's own process), the workers here are separate processes (`bench.worker_proc`:
the service's `running_worker` as `worker.py` runs it, or a bare worker), polling the same
task queue on the same server, while the benchmark process only starts sessions, signals
and waits. So the table says what a second `worker.py` buys on this machine, service and
bare side by side. Timings come from the histories (the start of each session's first
`call_client`, of each bare workflow's activity), the same clock for both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import WorkflowHandle, WorkflowHistory

from bench.report import Figure
from bench.scenarios import WAIT, Shared, Size, _histories
from bench.sessions import booking, bounded, percentile
from bench.stack import KEY_ID, Stack
from missed_session.domain import protocol
from missed_session.domain.models import CheckIn
from missed_session.temporal.scheduling import schedule_session

PROCESS_COUNTS = (1, 2)
SCENARIO = "8 workers"


@contextlib.asynccontextmanager
async def worker_processes(stack: Stack, kind: str, task_queue: str, count: int,
                           database_url: str = "") -> AsyncIterator[None]:
    """`count` worker processes on one task queue, until the block exits."""
    environment = {
        **os.environ,
        "MSR_TEMPORAL_ADDRESS": stack.address, "MSR_TASK_QUEUE": task_queue,
        "MSR_DATABASE_URL": database_url, "MSR_ENCRYPTION_KEYS": json.dumps(stack.keys),
        "MSR_ENCRYPTION_KEY_ID": KEY_ID, "MSR_METRICS_PORT": "0", "MSR_LOG_LEVEL": "error",
        "MSR_LOG_FORMAT": "json", "BENCH_ADDRESS": stack.address,
        "BENCH_TASK_QUEUE": task_queue,
    }
    for name in ("MSR_CONFIG_FILE", "MSR_SECRETS_DIR"):
        environment.pop(name, None)
    drains: list[asyncio.Task[None]] = []
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.worker_proc", kind, env=environment,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            if not line:
                msg = f"a {kind} worker process exited before it was ready"
                raise RuntimeError(msg)
        await asyncio.sleep(2.0)  # connected; give every worker time to start polling
        drains += [asyncio.create_task(_drain(p)) for p in processes]
        yield
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()
        for drain in drains:
            drain.cancel()


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


def _first_start(history: WorkflowHistory, activity_type: str) -> float | None:
    """When the first activity of this type started (epoch seconds), from the history."""
    scheduled_id = None
    for event in history.events:
        if (scheduled_id is None and event.HasField("activity_task_scheduled_event_attributes")
                and event.activity_task_scheduled_event_attributes.activity_type.name
                == activity_type):
            scheduled_id = event.event_id
        elif (scheduled_id is not None
              and event.HasField("activity_task_started_event_attributes")
              and event.activity_task_started_event_attributes.scheduled_event_id
              == scheduled_id):
            return event.event_time.ToDatetime(tzinfo=UTC).timestamp()
    return None


async def _attended(stack: Stack, size: Size, shared: Shared, processes: int
                    ) -> tuple[float, float]:
    """Sessions/s for the service and the bare workflow with `processes` workers each."""
    n = size.attended
    tq_bare = stack.task_queue(f"w{processes}-bare")
    async with worker_processes(stack, "bare", tq_bare, processes):
        results: list[asyncio.Task[Any]] = []

        async def start_bare(i: int) -> None:
            handle = await stack.bare.start_workflow(
                "BareWorkflow", {"i": i}, id=f"w{processes}-bare-{shared.run}-{i}",
                task_queue=tq_bare)
            results.append(asyncio.create_task(handle.result()))

        began = time.perf_counter()
        await bounded(range(n), size.concurrency, start_bare)
        await asyncio.wait_for(asyncio.gather(*results), timeout=WAIT)
        bare_rate = n / (time.perf_counter() - began)

    url = await stack.new_database()
    tq = stack.task_queue(f"w{processes}-attended")
    async with worker_processes(stack, "service", tq, processes, url):
        results = []
        start = datetime.now(UTC)

        async def start_session(i: int) -> None:
            session = booking(f"w{processes}-att-{shared.run}-{i}", start,
                              time_zone=shared.time_zone, index=i)
            _, handle = await schedule_session(stack.service, session, task_queue=tq,
                                               now=datetime.now(UTC))
            await handle.execute_update("check_in", CheckIn())
            results.append(asyncio.create_task(handle.result()))

        began = time.perf_counter()
        await bounded(range(n), size.concurrency, start_session)
        outcomes = await asyncio.wait_for(asyncio.gather(*results), timeout=WAIT)
        service_rate = n / (time.perf_counter() - began)
    if any(outcome.outcome.value != "attended" for outcome in outcomes):
        msg = "benchmark sessions did not close as attended"
        raise RuntimeError(msg)
    return service_rate, bare_rate


async def process_burst(stack: Stack, size: Size, shared: Shared, processes: int
                 ) -> tuple[list[float], list[float]]:
    """Grace expiry -> first outreach delays (s), service and bare, `processes` workers."""
    k = size.burst
    grace_seconds = max(4.0, k / 100)
    time_scale = 15 * 60 / grace_seconds
    lead = max(6.0, 1.5 * k / shared.service_rate)

    url = await stack.new_database()
    tq = stack.task_queue(f"w{processes}-burst")
    start = datetime.now(UTC) + timedelta(seconds=lead)
    sessions = [booking(f"w{processes}-burst-{shared.run}-{i}", start,
                        time_zone=shared.time_zone, time_scale=time_scale, index=i)
                for i in range(k)]
    expiry = (start + protocol.grace_period(sessions[0])).timestamp()
    handles: list[WorkflowHandle[Any, Any]] = []
    async with worker_processes(stack, "service", tq, processes, url):
        async def start_session(i: int) -> None:
            _, handle = await schedule_session(stack.service, sessions[i], task_queue=tq,
                                               now=datetime.now(UTC))
            handles.append(handle)

        await bounded(range(k), size.concurrency, start_session)
        connection = await asyncpg.connect(url)
        try:
            deadline = expiry + 180
            while time.time() < deadline:
                called = await connection.fetchval(
                    "SELECT count(DISTINCT session_id) FROM audit_events"
                    " WHERE event_type = 'outreach_attempted'")
                if called >= k:
                    break
                await asyncio.sleep(0.5)
        finally:
            await connection.close()
        histories = await _histories(handles)
    service = [at - expiry for h in histories
               if (at := _first_start(h, "call_client")) is not None]

    tq_bare = stack.task_queue(f"w{processes}-bare-burst")
    at_instant = time.time() + lead + grace_seconds
    async with worker_processes(stack, "bare", tq_bare, processes):
        async def start_bare(i: int) -> WorkflowHandle[Any, Any]:
            return await stack.bare.start_workflow(
                "BareSleepWorkflow", at_instant, id=f"w{processes}-bare-burst-{shared.run}-{i}",
                task_queue=tq_bare)

        bare_handles = await bounded(range(k), size.concurrency, start_bare)
        # Waited for 32 at a time: hundreds of concurrent long polls time out on a busy
        # server, and the figure comes from the histories, not from when results arrive.
        await asyncio.wait_for(bounded(bare_handles, 32, lambda h: h.result()),
                               timeout=WAIT + lead)
        bare_histories = await _histories(bare_handles)
    bare = [at - at_instant for h in bare_histories
            if (at := _first_start(h, "bare_step")) is not None]
    return service, bare


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def several_workers(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """Attended throughput and burst p99 with one and with two worker processes."""
    figures: list[Figure] = []
    rates: dict[int, tuple[float, float]] = {}
    p99: dict[int, tuple[float | None, float | None]] = {}
    for processes in PROCESS_COUNTS:
        rates[processes] = await _attended(stack, size, shared, processes)
        if processes == PROCESS_COUNTS[0]:
            shared.service_rate = rates[processes][0]  # sizes the burst's lead time
        service, bare = await process_burst(stack, size, shared, processes)
        p99[processes] = (percentile(service, 0.99) if service else None,
                          percentile(bare, 0.99) if bare else None)
        label = f"{processes} process{'es' if processes > 1 else ''}"
        figures += [
            Figure(SCENARIO, f"attended throughput, {label}", "sessions/s",
                   rates[processes][0], rates[processes][1], f"bare, {label}",
                   note=f"{size.attended} sessions each side, {size.concurrency} in flight"),
            Figure(SCENARIO, f"burst first outreach p99, {label}", "s", p99[processes][0],
                   p99[processes][1], f"bare, {label}", better="lower",
                   note=f"K={size.burst}; {len(service)}/{size.burst} reached outreach, "
                        f"bare {len(bare)}/{size.burst}"),
        ]
    one, two = PROCESS_COUNTS
    figures += [
        Figure(SCENARIO, "attended: 2 processes over 1 (service)", "sessions/s",
               rates[two][0], rates[one][0], "service, 1 process",
               note=f"bare: {rates[two][1]:.1f} over {rates[one][1]:.1f} sessions/s"),
        Figure(SCENARIO, "burst p99: 2 processes over 1 (service)", "s", p99[two][0],
               p99[one][0], "service, 1 process", better="lower",
               note=f"bare: {_seconds(p99[two][1])} over {_seconds(p99[one][1])} s"),
    ]
    return figures
