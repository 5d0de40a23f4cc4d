"""A worker process for the memory and idle scenarios: `python -m bench.worker_proc
service|stack|bare`.

Prints its resident memory as JSON lines: once idle (connected, nothing polled yet), then
twice a second while the worker runs (with the bare worker's activity count).
The service worker's sticky cache is its setting, `MSR_MAX_CACHED_WORKFLOWS` (default 1,000).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from bench.bare import BARE_WORKFLOWS, BareActivities
from bench.report import rss_mb


def _say(phase: str, done: int = 0) -> None:
    print(json.dumps({"phase": phase, "rss_mb": round(rss_mb(), 1), "done": done}), flush=True)


async def _report(activities: BareActivities | None) -> None:
    if os.environ.get("BENCH_REPORT_SECONDS") == "0":  # idle scenario: say it once, then rest
        _say("running")
        await asyncio.Event().wait()
    while True:
        await asyncio.sleep(0.5)
        _say("running", activities.completed if activities else 0)


async def service() -> None:
    from missed_session.config import load_settings  # noqa: PLC0415
    from missed_session.log_setup import configure_logging  # noqa: PLC0415
    from worker import running_worker  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    _say("idle")
    async with running_worker(settings):
        await _report(None)


async def stack() -> None:
    """What `dev.py up` runs in its own process: the worker and its followers, the HTTP API
    and its kept-text deliverer (the dev server and PostgreSQL run apart)."""
    from missed_session.api.app import create_app  # noqa: PLC0415
    from missed_session.api.server import ApiServer  # noqa: PLC0415
    from missed_session.api.settings import ApiSettings  # noqa: PLC0415
    from missed_session.application.service import Application  # noqa: PLC0415
    from missed_session.config import load_settings  # noqa: PLC0415
    from missed_session.log_setup import configure_logging  # noqa: PLC0415
    from worker import running_worker  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    _say("idle")
    async with running_worker(settings) as worker, \
            Application(settings, client=worker.client) as application:
        server = ApiServer(create_app(application, ApiSettings()), port=0)
        await server.start()
        try:
            await _report(None)
        finally:
            await server.stop()


async def bare() -> None:
    client = await Client.connect(os.environ["BENCH_ADDRESS"])
    activities = BareActivities()
    _say("idle")
    async with Worker(client, task_queue=os.environ["BENCH_TASK_QUEUE"],
                      workflows=BARE_WORKFLOWS, activities=[activities.step]):
        await _report(activities)


if __name__ == "__main__":
    kinds = {"service": service, "stack": stack, "bare": bare}
    asyncio.run(kinds[sys.argv[1]]())
