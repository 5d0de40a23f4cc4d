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
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


async def wait_set(event: asyncio.Event, seconds: float | None) -> None:
    """Wait until `event` is set or `seconds` have passed, whichever comes first.

    For background loops' sleeps. Not `asyncio.wait_for(event.wait(), ...)`: on Python 3.11
    that can swallow a cancellation arriving as the event is set, and a loop around it then
    never ends (a stopping worker or API hangs). `asyncio.wait` lets the cancellation through.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()

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


class HeldError(RuntimeError):
    """A port or the data directory the stack needs is held by another live process."""


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` (any local address), None if none.

    -1 when something listens but its process cannot be named (not Linux, or not ours).
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            listens = len(fields) > 9 and fields[3] == "0A"  # TCP_LISTEN
            if listens and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return _listening_elsewhere(port)
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            for fd in (process / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(process.name)
        except OSError:
            continue
    return -1


def _listening_elsewhere(port: int) -> int | None:
    """Without /proc: whether a connection to the port on loopback is accepted."""
    if Path("/proc/net/tcp").exists():
        return None
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return -1 if probe.connect_ex(("127.0.0.1", port)) == 0 else None


def refuse_held(ports: dict[str, int], postgres_dir: Path | None = None) -> None:
    """Refuse a port or data directory in use: `HeldError`, one line naming it and the PID.

    Checked before the stack opens anything: a port it is about to open, or its PostgreSQL
    data directory, already in use by a live process. A leftover or second stack is never
    joined silently: the stack refuses to start. `ports`: the setting that chooses each
    port -> the port (0: picked freely, not checked).
    """
    if postgres_dir is not None:
        pid = _postmaster_pid(postgres_dir)
        if pid is not None:
            msg = (f"{postgres_dir} is in use by PostgreSQL (PID {pid}): another stack runs "
                   f"on this data directory, or one was left running (stop it: kill {pid}); "
                   "or set MSR_DATA_DIR")
            raise HeldError(msg)
    for setting, port in ports.items():
        if not port:
            continue
        pid = listening_pid(port)
        if pid is not None:
            holder = f"PID {pid}" if pid > 0 else "another process"
            msg = (f"port {port} ({setting}) is already in use by {holder}: another stack "
                   f"is running, or one was left running; stop it or set {setting}")
            raise HeldError(msg)


def _postmaster_pid(postgres_dir: Path) -> int | None:
    """The PID of a live PostgreSQL on `postgres_dir` (postmaster.pid), None if none."""
    try:
        pid = int((postgres_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a stale file: the server died without removing it
    except PermissionError:
        pass  # alive, and not ours (the embedded server runs as its own user)
    return pid
