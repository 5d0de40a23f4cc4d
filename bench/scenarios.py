"""The seven scenarios; each measures the service and its baseline in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer, Worker

import starter
from activities.outreach import Sender
from bench import cpu
from bench.bare import BARE_WORKFLOWS, BareActivities
from bench.report import Figure
from bench.sessions import (
    TimingPhone,
    booking,
    booking_data,
    bounded,
    first_outreach_delays,
    midday_time_zone,
    percentile,
)
from bench.stack import Stack
from missed_session.config import DEFAULT_MAX_CACHED_WORKFLOWS
from missed_session.domain import protocol
from missed_session.domain.models import AuditEvent, AuditEventType, CheckIn, SessionBooking
from missed_session.store.audit import AuditStore
from missed_session.store.database import open_pool
from missed_session.temporal.scheduling import schedule_session
from worker import WORKFLOW_RUNNER, new_worker
from workflows.session import SessionWorkflow

ROOT = Path(__file__).resolve().parent.parent
SENDER = Sender("Alex at the front desk", "+15555550100")
WAIT = 600.0
"""No scenario step waits longer than this: a stuck workflow fails the run, not hangs it."""
FAST = 3600.0
"""Time scale for the no-show ladder: a protocol minute lasts 1/60 s."""


@dataclass(frozen=True)
class Size:
    """How much each scenario does."""

    name: str
    attended: int
    ladders: int
    history_sample: int
    burst: int
    audit_single: int
    audit_batched: int
    audit_batch: int
    open_sessions: int
    burst_workers: int
    """K of the burst on two worker processes a side (`bench.bursts`)."""
    burst_large: int
    """K of the large burst: how the cost grows with the size of the burst."""
    concurrency: int = 64


SIZES = {
    "smoke": Size("smoke", attended=40, ladders=2, history_sample=20, burst=40,
                  audit_single=200, audit_batched=2_000, audit_batch=100, open_sessions=200,
                  burst_workers=20, burst_large=60),
    "full": Size("full", attended=1_000, ladders=20, history_sample=200, burst=1_000,
                 audit_single=3_000, audit_batched=30_000, audit_batch=100,
                 open_sessions=10_000, burst_workers=1_000, burst_large=5_000),
}


@dataclass
class Shared:
    """What later scenarios reuse from earlier ones."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    time_zone: str = field(default_factory=midday_time_zone)
    service_rate: float = 20.0
    bare_rate: float = 100.0
    histories: list[WorkflowHistory] = field(default_factory=list)
    sessions_database: str = ""
    """Where the attended and ladder sessions' audit trails are (for `audit replay --all`)."""


@contextlib.asynccontextmanager
async def bare_worker(stack: Stack, task_queue: str,
                      activities: BareActivities) -> AsyncIterator[Worker]:
    async with Worker(stack.bare, task_queue=task_queue, workflows=BARE_WORKFLOWS,
                      activities=[activities.step]) as worker:
        yield worker


async def _histories(handles: list[WorkflowHandle[Any, Any]]) -> list[WorkflowHistory]:
    return await bounded(handles, 32, lambda handle: handle.fetch_history())


def _events(histories: list[WorkflowHistory]) -> float:
    return sum(len(h.events) for h in histories) / len(histories)


# -- 1 and 2: attended throughput, history cost ----------------------------------------------


async def attended(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """Attended sessions (start, check-in, close) against a bare one-activity workflow."""
    n = size.attended
    tq_bare = stack.task_queue("bare")
    acts = BareActivities()
    async with bare_worker(stack, tq_bare, acts):
        bare_handles: list[WorkflowHandle[Any, Any]] = []
        results: list[asyncio.Task[Any]] = []

        async def start_bare(i: int) -> None:
            handle = await stack.bare.start_workflow(
                "BareWorkflow", {"i": i}, id=f"bare-{shared.run}-{i}", task_queue=tq_bare)
            bare_handles.append(handle)
            results.append(asyncio.create_task(handle.result()))

        began, cpu_before = time.perf_counter(), cpu.reading(stack.directory)
        await bounded(range(n), size.concurrency, start_bare)
        await asyncio.wait_for(asyncio.gather(*results), timeout=WAIT)
        bare_seconds = time.perf_counter() - began
        bare_cpu = cpu.reading(stack.directory) - cpu_before

    url = shared.sessions_database = await stack.new_database()
    pool = await open_pool(url)
    tq = stack.task_queue("attended")
    try:
        async with new_worker(stack.service, pool, task_queue=tq, sender=SENDER):
            handles: list[WorkflowHandle[Any, Any]] = []
            results = []
            start = datetime.now(UTC)

            async def start_session(i: int) -> None:
                session = booking(f"att-{shared.run}-{i}", start, time_zone=shared.time_zone,
                                  index=i)
                _, handle = await schedule_session(stack.service, session, task_queue=tq,
                                                   now=datetime.now(UTC))
                await handle.execute_update("check_in", CheckIn())
                handles.append(handle)
                results.append(asyncio.create_task(handle.result()))

            began, cpu_before = time.perf_counter(), cpu.reading(stack.directory)
            await bounded(range(n), size.concurrency, start_session)
            outcomes = await asyncio.wait_for(asyncio.gather(*results), timeout=WAIT)
            service_seconds = time.perf_counter() - began
            service_cpu = cpu.reading(stack.directory) - cpu_before
    finally:
        await pool.close()
    not_attended = [o for o in outcomes if o.outcome.value != "attended"]
    if not_attended:
        msg = f"{len(not_attended)} benchmark sessions did not close as attended"
        raise RuntimeError(msg)

    shared.service_rate = n / service_seconds
    shared.bare_rate = n / bare_seconds
    sample = min(n, size.history_sample)
    service_histories = await _histories(handles)
    bare_histories = await _histories(bare_handles[:sample])
    shared.histories.extend(service_histories)
    service_histories = service_histories[:sample]
    return [
        Figure("1 attended", "throughput", "sessions/s", shared.service_rate, shared.bare_rate,
               "bare 1-activity wf", target="ratio >= 0.8",
               note=f"{n} sessions each side, started {size.concurrency} at a time; start, "
                    "check-in update, close, vs start, one activity, close",
               extra={"sessions": n, "service_seconds": service_seconds,
                      "bare_seconds": bare_seconds}),
        Figure("1 attended", "CPU per session, all processes", "ms",
               service_cpu.per(n)["cpu_ms_total"], bare_cpu.per(n)["cpu_ms_total"],
               "bare 1-activity wf", better="lower",
               note="driver and in-process workers, dev server and PostgreSQL: what load "
                    "does not move",
               extra={**{f"service_{k}": v for k, v in service_cpu.per(n).items()},
                      **{f"bare_{k}": v for k, v in bare_cpu.per(n).items()}}),
        Figure("2 history", "events per attended session", "events",
               _events(service_histories), _events(bare_histories), "bare 1-activity wf",
               better="lower", note=f"mean over {sample} fetched histories each side"),
    ]


async def ladder(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """The full no-show ladder (3 attempts, escalation, plan) against its bare shape."""
    n = size.ladders
    url = shared.sessions_database or await stack.new_database()
    pool = await open_pool(url)
    tq = stack.task_queue("ladder")
    start = datetime.now(UTC)
    sessions = [booking(f"lad-{shared.run}-{i}", start, time_zone=shared.time_zone,
                        time_scale=FAST, index=i) for i in range(n)]
    try:
        async with new_worker(stack.service, pool, task_queue=tq, sender=SENDER):
            handles = [
                (await schedule_session(stack.service, s, task_queue=tq,
                                        now=datetime.now(UTC)))[1]
                for s in sessions
            ]
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(h.result() for h in handles)), timeout=WAIT)
        audit_rows = await pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE session_id LIKE 'lad-%'")
    finally:
        await pool.close()
    first = sessions[0]
    shape = {
        "grace_seconds": protocol.grace_period(first).total_seconds(),
        "spacing_seconds": protocol.attempt_spacing(first).total_seconds(),
        "attempts": float(first.protocol.max_attempts),
    }
    tq_bare = stack.task_queue("bare-ladder")
    async with bare_worker(stack, tq_bare, BareActivities()):
        bare_handles = [
            await stack.bare.start_workflow("BareLadderWorkflow", shape,
                                            id=f"bare-lad-{shared.run}-{i}", task_queue=tq_bare)
            for i in range(n)
        ]
        await asyncio.wait_for(asyncio.gather(*(h.result() for h in bare_handles)),
                               timeout=WAIT)
    histories = await _histories(list(handles))
    shared.histories.extend(histories)
    bare = await _histories(bare_handles)
    kinds = sorted({o.outcome.value for o in outcomes})
    return [Figure(
        "2 history", "events per no-show ladder", "events", _events(histories), _events(bare),
        "bare ladder wf", better="lower",
        note=f"{n} ladders each side ({', '.join(kinds)}; {audit_rows / n:.0f} audit events "
             f"each); bare ladder = same sleeps and side-effect activities "
             f"(alert, {int(shape['attempts'])}x call+voicemail, escalation, plan), no audit",
    )]


# -- 3: burst ------------------------------------------------------------------------------


async def burst(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """K sessions with one start, nobody checks in: grace expiry -> first outreach attempt."""
    k = size.burst
    grace_seconds = max(4.0, k / 100)
    time_scale = 15 * 60 / grace_seconds
    lead = max(6.0, 1.5 * k / shared.service_rate)

    url = await stack.new_database()
    pool = await open_pool(url)
    phone = TimingPhone(pool)
    tq = stack.task_queue("burst")
    start = datetime.now(UTC) + timedelta(seconds=lead)
    sessions = [booking(f"burst-{shared.run}-{i}", start, time_zone=shared.time_zone,
                        time_scale=time_scale, index=i) for i in range(k)]
    expiry = (start + protocol.grace_period(sessions[0])).timestamp()
    try:
        async with new_worker(stack.service, pool, task_queue=tq, sender=SENDER, phone=phone):
            async def start_session(session: SessionBooking) -> None:
                await schedule_session(stack.service, session, task_queue=tq,
                                       now=datetime.now(UTC))

            cpu_before = cpu.reading(stack.directory)
            await bounded(sessions, size.concurrency, start_session)
            await asyncio.sleep(max(0.0, start.timestamp() - time.time() - 0.5))
            ready = await pool.fetchval(
                "SELECT count(*) FROM audit_events WHERE event_type = 'scheduled'")
            await until(lambda: len(phone.first_calls) >= k, expiry + 120)
            service_cpu = cpu.reading(stack.directory) - cpu_before
            trail = await _trail_delays(pool, [s.session_id for s in sessions], expiry + 150)
    finally:
        await pool.close()
    service = [phone.first_calls[s.session_id] - expiry for s in sessions
               if s.session_id in phone.first_calls]
    apart = [abs(trail[s] - (phone.first_calls[s] - expiry)) for s in trail
             if s in phone.first_calls]

    tq_bare = stack.task_queue("bare-burst")
    acts = BareActivities()
    at = time.time() + lead + grace_seconds
    async with bare_worker(stack, tq_bare, acts):
        async def start_bare(i: int) -> None:
            await stack.bare.start_workflow("BareSleepWorkflow", at, id=f"bare-burst-"
                                            f"{shared.run}-{i}", task_queue=tq_bare)

        cpu_before = cpu.reading(stack.directory)
        await bounded(range(k), size.concurrency, start_bare)
        await until(lambda: len(acts.started) >= k, at + 120)
        bare_cpu = cpu.reading(stack.directory) - cpu_before
    bare = [started - at for started in acts.started.values()]

    figures = []
    for label, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        figures.append(Figure(
            "3 burst", f"grace expiry -> first outreach {label}", "s",
            percentile(service, share) if service else None,
            percentile(bare, share) if bare else None, "bare sleep+activity",
            better="lower", target="ratio <= 1.25" if label == "p99" else "",
            note="" if label != "p50" else (
                f"K={k} sessions, one start, grace {grace_seconds:g} s (time scale "
                f"{time_scale:g}); {ready}/{k} scheduled before the start; "
                f"{len(service)}/{k} reached outreach, bare {len(bare)}/{k}"),
        ))
    figures.append(Figure(
        "3 burst", "CPU per session up to its first call, all processes", "ms",
        service_cpu.per(k)["cpu_ms_total"], bare_cpu.per(k)["cpu_ms_total"],
        "bare sleep+activity", better="lower",
        note="start, wait, no-show and first call (the service also writes the trail and "
             "starts the voicemail meanwhile) against start, sleep and one activity",
        extra={**{f"service_{name}": v for name, v in service_cpu.per(k).items()},
               **{f"bare_{name}": v for name, v in bare_cpu.per(k).items()}}))
    figures.append(Figure(
        "3 burst", "first_outreach_delay p99: the trail vs the channel's record", "s",
        percentile(list(trail.values()), 0.99) if trail else None,
        percentile(service, 0.99) if service else None, "the phone's record of the calls",
        better="lower",
        note=f"what the service reports (trail: first call minus grace expiry) beside the "
             f"phone's own record, per session at most {max(apart, default=0):.3f} s apart "
             f"({len(apart)} sessions)",
        extra={"most_apart_seconds": max(apart, default=None),
               "over_a_second_apart": sum(1 for gap in apart if gap > 1.0),
               "of_them_rung_again": sum(1 for s in trail if s in phone.rung_again
                                         and abs(trail[s] - (phone.first_calls[s] - expiry)) > 1),
               "rung_again": len(phone.rung_again)},
    ))
    return figures


async def _trail_delays(pool: asyncpg.Pool, session_ids: list[str],
                        deadline: float) -> dict[str, float]:
    """The trail's first-outreach delays, once every session's first call is recorded."""
    delays: dict[str, float] = {}
    while time.time() < deadline:
        delays = await first_outreach_delays(pool, session_ids)
        if len(delays) >= len(session_ids):
            break
        await asyncio.sleep(0.25)
    return delays


async def until(done: Any, deadline: float) -> None:
    while not done() and time.time() < deadline:  # noqa: ASYNC110 (polled, not signalled)
        await asyncio.sleep(0.05)


# -- 4: audit append ---------------------------------------------------------------------------


INSERT = ("INSERT INTO {table} (session_id, sequence, event_type, occurred_at, data)"
          " VALUES ($1, $2, $3, $4, $5::jsonb)")
COLUMNS = ("session_id", "sequence", "event_type", "occurred_at", "data")


def _audit_events(prefix: str, count: int) -> list[AuditEvent]:
    now = datetime.now(UTC)
    kinds = list(AuditEventType)
    return [
        AuditEvent(session_id=f"{prefix}-{i // 10}", sequence=i % 10 + 1,
                   event_type=kinds[i % len(kinds)], occurred_at=now + timedelta(seconds=i),
                   data={"attempt": i % 3 + 1, "channel": "call", "result": "no_answer"})
        for i in range(count)
    ]


def _row(event: AuditEvent) -> tuple[Any, ...]:
    return (event.session_id, event.sequence, event.event_type.value, event.occurred_at,
            json.dumps(event.data, sort_keys=True))


def _session_of(event: AuditEvent) -> str:
    return event.session_id


def _chunks(events: list[AuditEvent], batch: int) -> Iterator[list[AuditEvent]]:
    for i in range(0, len(events), batch):
        yield events[i:i + batch]


async def audit_append(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """AuditStore against raw executemany and COPY into an identical table."""
    url = await stack.new_database()
    pool = await open_pool(url)
    connection = await asyncpg.connect(url)
    figures = []
    try:
        for table in ("audit_raw_many", "audit_raw_copy"):
            await connection.execute(
                f"CREATE TABLE {table} (LIKE audit_events INCLUDING ALL)")
        store = AuditStore(pool)
        for batch, count in ((1, size.audit_single), (size.audit_batch, size.audit_batched)):
            events = {name: _audit_events(f"{name}-{batch}", count)
                      for name in ("store", "many", "copy")}

            async def through_store(chunk: list[AuditEvent]) -> None:
                # The one append path: each session's events in one `record`, the chunk's
                # sessions at once, as the workers write them.
                await asyncio.gather(*(store.record(list(trail)) for _, trail in
                                       itertools.groupby(chunk, key=_session_of)))

            async def raw_many(chunk: list[AuditEvent]) -> None:
                await connection.executemany(INSERT.format(table="audit_raw_many"),
                                             [_row(e) for e in chunk])

            async def raw_copy(chunk: list[AuditEvent]) -> None:
                await connection.copy_records_to_table(
                    "audit_raw_copy", records=[_row(e) for e in chunk], columns=COLUMNS)

            rates = {}
            for name, write in (("many", raw_many), ("store", through_store),
                                ("copy", raw_copy)):
                began = time.perf_counter()
                for chunk in _chunks(events[name], batch):
                    await write(chunk)
                rates[name] = count / (time.perf_counter() - began)
            how = ("one record() per event" if batch == 1 else
                   f"{batch} events at a time, one record() per session's events")
            figures += [
                Figure("4 audit append", f"events/s, batch {batch}", "events/s",
                       rates["store"], rates["many"], "raw executemany",
                       target="ratio >= 0.7",
                       note=f"{count} events; AuditStore: {how}; raw: one connection, "
                            "same rows, identical table (LIKE audit_events INCLUDING ALL)"),
                Figure("4 audit append", f"events/s, batch {batch}, vs COPY", "events/s",
                       rates["store"], rates["copy"], "raw copy_records_to_table"),
            ]
    finally:
        await connection.close()
        await pool.close()
    return figures


# -- 5: replay ---------------------------------------------------------------------------------


def service_replay_available() -> bool:
    """Whether starter.py has `audit replay --all` (another change was adding it)."""
    try:
        audit_cli = importlib.import_module("missed_session.audit.cli")
    except ImportError:
        return False
    return bool(audit_cli.is_action(["audit", "replay", "--all"]))


def service_env(stack: Stack, task_queue: str, database_url: str) -> dict[str, str]:
    """The MSR_* settings that point the service's entry points at the benchmark stack."""
    return {
        "MSR_TEMPORAL_ADDRESS": stack.address, "MSR_TASK_QUEUE": task_queue,
        "MSR_DATABASE_URL": database_url, "MSR_ENCRYPTION_KEYS": json.dumps(stack.keys),
        "MSR_DATA_DIR": str(stack.directory / "msr-data"), "MSR_METRICS_PORT": "0",
        "MSR_LOG_LEVEL": "warning", "MSR_LOG_FORMAT": "json",
    }


async def run_starter(env: dict[str, str], argv: list[str]) -> tuple[int, str, float]:
    """`starter.py argv` in this process (in a thread: it runs its own event loop)."""
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID", "MSR_TIME_SCALE"):
        os.environ.pop(name, None)
    os.environ.update(env)
    output = io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(output):
        code = await asyncio.to_thread(starter.main, argv)
    return code, output.getvalue().strip(), time.perf_counter() - began


async def replay(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """`audit replay --all` against the bare temporalio Replayer over the same histories."""
    histories = shared.histories
    replayer = Replayer(workflows=[SessionWorkflow], data_converter=stack.converter,
                        workflow_runner=WORKFLOW_RUNNER)

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    began = time.perf_counter()
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    bare_rate = len(histories) / (time.perf_counter() - began)
    failures = len(results.replay_failures)

    async def fetched() -> AsyncIterator[WorkflowHistory]:
        handles = [stack.service.get_workflow_handle(h.workflow_id) for h in histories]
        for history in await _histories(handles):
            yield history

    began = time.perf_counter()
    await replayer.replay_workflows(fetched(), raise_on_replay_failure=False)
    fetch_rate = len(histories) / (time.perf_counter() - began)
    note = f"{len(histories)} closed sessions (attended and no-show ladders)"
    service_rate = None
    if service_replay_available():
        env = service_env(stack, stack.task_queue("replay"), shared.sessions_database)
        code, output, seconds = await run_starter(env, ["audit", "replay", "--all"])
        service_rate = len(histories) / seconds
        last = output.splitlines()[-1] if output else ""
        note += (f"; `starter.py audit replay --all` (fetch, replay, cross-check with the "
                 f"trail) exit {code}: {last}; bare Replayer: histories already fetched, "
                 f"{failures} failed")
    else:
        note += "; `starter.py audit replay --all` does not exist yet: bare figure only"
    return [
        Figure("5 replay", "sessions verified/s", "sessions/s", service_rate, bare_rate,
               "bare Replayer", target="ratio >= 0.5", note=note),
        Figure("5 replay", "sessions verified/s, vs fetch + replay", "sessions/s",
               service_rate, fetch_rate, "bare fetch (32 in flight) + Replayer"),
    ]


# -- 6 and 7: day intake, then worker memory with the day's sessions open ------------------------


async def intake_and_memory(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """A day file through starter.py against a bare start loop; then each worker's RSS."""
    n = size.open_sessions
    day = stack.directory / "day.jsonl"
    first = datetime.now(UTC) + timedelta(hours=2)
    lines = []
    for i in range(n):
        start = first + timedelta(minutes=(i * 600) // n)
        lines.append(json.dumps(booking_data(f"day-{shared.run}-{i}", start,
                                             time_zone=shared.time_zone, index=i)))
    day.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bare_payloads = [json.loads(line) for line in lines]

    url = await stack.new_database()
    env = service_env(stack, stack.task_queue("day"), url)
    code, output, service_seconds = await run_starter(
        env, ["schedule", "--file", str(day), "--concurrency", str(size.concurrency)])
    if code != 0:
        msg = f"starter.py schedule --file day.jsonl exited {code}: {output}"
        raise RuntimeError(msg)

    tq_bare = stack.task_queue("bare-day")

    async def start_bare(i: int) -> None:
        await stack.bare.start_workflow("BareWaitingWorkflow", bare_payloads[i],
                                        id=f"bare-day-{shared.run}-{i}", task_queue=tq_bare)

    began = time.perf_counter()
    await bounded(range(n), size.concurrency, start_bare)
    bare_seconds = time.perf_counter() - began

    cache = (os.environ.get("MSR_MAX_CACHED_WORKFLOWS")
             or f"{DEFAULT_MAX_CACHED_WORKFLOWS:,} (default)")
    service_rss = await _worker_rss("service", env, n, url=url)
    bare_rss = await _worker_rss("bare", {"BENCH_ADDRESS": stack.address,
                                          "BENCH_TASK_QUEUE": tq_bare}, n)
    return [
        Figure("7 day intake", "bookings started/s", "bookings/s", n / service_seconds,
               n / bare_seconds, "bare start_workflow loop", target="ratio >= 0.8",
               note=f"{n} bookings; `starter.py schedule --file day.jsonl --concurrency "
                    f"{size.concurrency}` (validate all, connect, start) vs a bare loop with "
                    f"the same concurrency; {output}"),
        Figure("6 worker memory", f"RSS with {n} open sessions", "MB", service_rss["rss_mb"],
               bare_rss["rss_mb"], "bare worker", better="lower", target="value <= 300",
               note=f"worker processes, sticky cache {cache} workflows; idle RSS "
                    f"{service_rss['idle_mb']:.0f} MB vs bare {bare_rss['idle_mb']:.0f} MB; "
                    f"caught up in {service_rss['seconds']:.0f} s vs "
                    f"{bare_rss['seconds']:.0f} s",
               extra={"service_idle_mb": service_rss["idle_mb"],
                      "bare_idle_mb": bare_rss["idle_mb"],
                      "service_catch_up_s": service_rss["seconds"],
                      "bare_catch_up_s": bare_rss["seconds"]}),
    ]


async def _worker_rss(kind: str, env: dict[str, str], n: int, *,
                      url: str | None = None) -> dict[str, float]:
    """Run a worker process until it has taken up all `n` sessions; its RSS then."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.worker_proc", kind,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    connection = await asyncpg.connect(url) if url else None
    began = time.perf_counter()
    idle = rss = 0.0
    try:
        deadline = time.time() + max(120.0, n / 20)
        while time.time() < deadline:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            if not line:
                msg = f"the {kind} worker process exited early"
                raise RuntimeError(msg)
            sample = json.loads(line)
            if sample["phase"] == "idle":
                idle = sample["rss_mb"]
                began = time.perf_counter()
                continue
            rss = sample["rss_mb"]
            if connection is not None:
                done = await connection.fetchval(
                    "SELECT count(*) FROM audit_events WHERE event_type = 'scheduled'")
            else:
                done = sample["done"]
            if done >= n:
                break
        seconds = time.perf_counter() - began
        await asyncio.sleep(1.0)  # settle, then the last word on memory
        line = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        if line:
            rss = max(rss, json.loads(line)["rss_mb"])
    finally:
        if connection is not None:
            await connection.close()
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=15)
        if process.returncode is None:
            process.kill()
            await process.wait()
    return {"rss_mb": rss, "idle_mb": idle, "seconds": seconds}
