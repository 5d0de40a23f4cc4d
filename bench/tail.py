"""Where a burst's slowest sessions spent their time: a diagnostic, not a figure.

    .venv/bin/python -m bench.tail            # K = 1,000 on a fresh embedded stack
    .venv/bin/python -m bench.tail --k 300

Runs the burst scenario's sessions (one start, nobody checks in) on the service's worker,
then reads the histories of every fortieth session by first-call delay and of the ten
slowest, and prints, per session: the delay, when its expiry timer fired, its next workflow
tasks (scheduled, started, completed, timed out: seconds after the grace period's expiry)
and any task that timed out or failed. It found the burst's bimodal tail (docs/performance.md,
2026-12-08): tasks that waited out the sticky queue's schedule-to-start timeout and went to
the back of the task queue.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from temporalio.api.history.v1 import HistoryEvent

from bench.scenarios import SENDER, until
from bench.sessions import TimingPhone, booking, bounded, midday_time_zone, percentile
from bench.stack import embedded_stack
from missed_session.domain import protocol
from missed_session.domain.models import SessionBooking
from missed_session.store.database import open_pool
from missed_session.temporal.scheduling import schedule_session
from worker import new_worker

SHOWN_TASKS = 6


def _kind(event: HistoryEvent) -> str:
    return str(event.WhichOneof("attributes")).removesuffix("_event_attributes")


def describe(events: list[HistoryEvent], expiry: float) -> str:
    """The workflow tasks after the expiry timer fired, and what timed out or failed."""
    fired: float | None = None
    tasks: list[str] = []
    for event in events:
        kind = _kind(event)
        at = event.event_time.ToDatetime(tzinfo=UTC).timestamp() - expiry
        if kind == "timer_fired" and at > -1 and fired is None:
            fired = at
        if fired is not None and len(tasks) < SHOWN_TASKS and kind.startswith("workflow_task"):
            tasks.append(f"{kind.removeprefix('workflow_task_')}@{at:.1f}")
    bad = {kind: n for kind, n in Counter(_kind(e) for e in events).items()
           if "timed_out" in kind or "failed" in kind}
    shown = "?" if fired is None else f"{fired:.1f}"
    return f"fired@{shown} {' '.join(tasks)} {bad or ''}".rstrip()


async def main(k: int) -> None:
    async with embedded_stack() as stack:
        pool = await open_pool(await stack.new_database())
        phone = TimingPhone(pool)
        grace = max(4.0, k / 100)
        start = datetime.now(UTC) + timedelta(seconds=max(6.0, 1.5 * k / 20))
        zone = midday_time_zone()
        sessions = [booking(f"tail-{i}", start, time_zone=zone, time_scale=15 * 60 / grace,
                            index=i) for i in range(k)]
        expiry = (start + protocol.grace_period(sessions[0])).timestamp()
        try:
            async with new_worker(stack.service, pool, task_queue=stack.task_queue("tail"),
                                  sender=SENDER, phone=phone) as worker:
                async def schedule(session: SessionBooking) -> None:
                    await schedule_session(stack.service, session,
                                           task_queue=worker.task_queue,
                                           now=datetime.now(UTC))

                await bounded(sessions, 8, schedule)
                await until(lambda: len(phone.first_calls) >= k, expiry + 150)
                delays = sorted((phone.first_calls.get(s.session_id, float("inf")) - expiry, i)
                                for i, s in enumerate(sessions))
                seconds = [delay for delay, _ in delays]
                print(f"K={k}: p50 {percentile(seconds, 0.5):.1f} s, p95 "
                      f"{percentile(seconds, 0.95):.1f} s, p99 {percentile(seconds, 0.99):.1f} s")
                for delay, i in delays[::max(1, k // 40)] + delays[-10:]:
                    handle = stack.service.get_workflow_handle(sessions[i].workflow_id)
                    history = await handle.fetch_history()
                    print(f"{delay:6.1f} s  {describe(list(history.events), expiry)}")
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.tail", description=__doc__)
    parser.add_argument("--k", type=int, default=1_000, help="sessions in the burst")
    asyncio.run(main(parser.parse_args().k))
