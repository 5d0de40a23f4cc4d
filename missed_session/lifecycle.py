"""How a long-running process of the service starts and stops.

Start-up waits for what it depends on: a worker started with the machine, or restarted by
its supervisor, may come up before PostgreSQL or Temporal does, and should wait for them
(saying so) rather than die with a traceback for the supervisor to restart in a loop.
Stopping is a request, not a kill: SIGTERM (what systemd, Kubernetes and docker send) and
SIGINT (Ctrl-C) cancel the main task, so every `async with` on the way out runs: the worker
finishes or hands back its in-flight work (Temporal's graceful shutdown), and the embedded
stack stops what it started.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, timed out
    asyncpg.CannotConnectNowError,  # "the database system is starting up"
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    RuntimeError,  # the Temporal client's "Failed client connect"
)
"""Failures that mean "not there yet": worth waiting out. A refused password, an unknown
database or a bad URL are not among them: they fail at once, naming the problem."""

FIRST_DELAY = 0.5
MAX_DELAY = 30.0


async def waiting_for(
    dependency: str,
    connect: Callable[[], Awaitable[T]],
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> T:
    """`connect()`, retried with exponential backoff for as long as `dependency` is down.

    Each wait is one log line naming the dependency and the error's kind (not its message,
    which may carry a URL with a password). Cancellation (a stop request) ends the wait.
    """
    delay = first_delay
    attempt = 1
    while True:
        try:
            result = await connect()
        except OUTAGE_ERRORS as error:
            log.warning("waiting_for_dependency", dependency=dependency, attempt=attempt,
                        error=type(error).__name__, retry_in_seconds=round(delay, 1))
        else:
            if attempt > 1:
                log.info("dependency_reachable", dependency=dependency, attempts=attempt)
            return result
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
        attempt += 1


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT cancel the calling task (the process's main task).

    A second signal cancels again, cutting a graceful shutdown short.
    """
    task = asyncio.current_task()
    if task is None:
        msg = "stop_on_signals() must be called from the main task"
        raise RuntimeError(msg)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, task, signum)


def _stop(task: asyncio.Task[object], signum: signal.Signals) -> None:
    log.info("stop_requested", signal=signum.name)
    task.cancel()


def run_until_stopped(main: Callable[[], Awaitable[int | None]]) -> int:
    """Run `main` until it returns or a stop signal ends it; its exit code, 0 when stopped."""

    async def stoppable() -> int | None:
        stop_on_signals()
        return await main()

    try:
        return asyncio.run(stoppable()) or 0
    except (asyncio.CancelledError, KeyboardInterrupt):
        return 0
