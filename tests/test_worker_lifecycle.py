"""The worker as an operator runs it: its own process, started before what it needs, stopped.

`worker.py` is started while neither Temporal nor PostgreSQL answers; it must wait for each
(one log line per wait), start once both are there, and stop cleanly on SIGTERM and SIGINT:
exit code 0, no traceback. The embedded PostgreSQL is stopped only by the process that
started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from temporalio.testing import WorkflowEnvironment

from demo import temporal_cli
from missed_session.store.embedded import server_running as _server_running
from missed_session.temporal import search_attributes
from tests.support.end_to_end import free_port
from tests.support.servers import TEST_CONVERTER, TEST_KEYS

ROOT = Path(__file__).resolve().parent.parent


class LogWatcher:
    """Reads a process's JSON log lines as they come, so a test can wait for one."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self.lines: list[dict[str, object]] = []
        self.raw: list[str] = []

    async def wait_for(self, event: str, within: float = 60.0, **fields: object
                       ) -> dict[str, object]:
        for line in self.lines:
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
                return line
        async with asyncio.timeout(within):
            while True:
                raw = await self._stream.readline()
                if not raw:
                    msg = f"the process ended before logging {event}: {self.raw[-5:]}"
                    raise AssertionError(msg)
                text = raw.decode()
                self.raw.append(text)
                with contextlib.suppress(json.JSONDecodeError):
                    line = json.loads(text)
                    if isinstance(line, dict):
                        self.lines.append(line)
                        if line.get("event") == event and all(
                            line.get(k) == v for k, v in fields.items()
                        ):
                            return line

    async def rest(self) -> str:
        """Everything the process writes until it ends."""
        remaining = await self._stream.read()
        return "".join(self.raw) + remaining.decode()


def held_port() -> socket.socket:
    """A loopback port bound now, not listening: connecting is refused, and no other process
    (the dev server's UI, a test run beside this one) can take it before `unix_to_tcp` does."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    return held


@contextlib.asynccontextmanager
async def unix_to_tcp(socket_path: str, held: socket.socket) -> AsyncIterator[None]:
    """The held port, forwarding to PostgreSQL's Unix socket: a database that 'comes up'."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(socket_path)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(forward, sock=held)
    try:
        yield
    finally:
        server.close()


def postgres_socket(url: str) -> tuple[str, str]:
    """The Unix socket path of the embedded server's URL, and the URL's database name."""
    parts = urlsplit(url)
    host = parse_qs(parts.query)["host"][0]
    [socket_file] = [p for p in Path(host).glob(".s.PGSQL.*") if p.suffix != ".lock"]
    return str(socket_file), parts.path.lstrip("/")


async def start_worker(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, LogWatcher]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    return process, LogWatcher(process)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_worker_waits_for_temporal_and_postgresql_then_stops_cleanly(
    database_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    temporal_port, postgres = free_port(), held_port()
    postgres_port = postgres.getsockname()[1]
    socket_path, database = postgres_socket(database_url)
    env = {
        "MSR_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "MSR_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{postgres_port}/{database}",
        "MSR_ENCRYPTION_KEYS": json.dumps(TEST_KEYS),
        "MSR_TASK_QUEUE": f"tq-{uuid.uuid4().hex}",
        "MSR_METRICS_PORT": "0",
        "MSR_LOG_FORMAT": "json",
        "MSR_DATA_DIR": str(tmp_path),
    }
    process, logs = await start_worker(env)
    try:
        await logs.wait_for("waiting_for_dependency", dependency="temporal")
        server = await WorkflowEnvironment.start_local(
            data_converter=TEST_CONVERTER, port=temporal_port,
            dev_server_existing_path=temporal_cli(),
            dev_server_extra_args=search_attributes.dev_server_flags(),
        )
        try:
            await logs.wait_for("dependency_reachable", dependency="temporal")
            await logs.wait_for("waiting_for_dependency", dependency="postgresql")
            async with unix_to_tcp(socket_path, postgres):
                await logs.wait_for("dependency_reachable", dependency="postgresql")
                await logs.wait_for("worker_started")
                process.send_signal(signum)
                await logs.wait_for("stop_requested", signal=signum.name)
                await logs.wait_for("worker_stopped")
                output = await logs.rest()
                code = await asyncio.wait_for(process.wait(), 30)
        finally:
            await server.shutdown()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, output
    assert "Traceback" not in output
    waits = [line for line in logs.lines if line.get("event") == "waiting_for_dependency"]
    assert {line["dependency"] for line in waits} == {"temporal", "postgresql"}
    assert all("password" not in json.dumps(line) for line in waits)


STACK_PROCESS = textwrap.dedent("""
    import sys
    from pathlib import Path
    from missed_session.store.database import embedded_database_url
    print(embedded_database_url(Path(sys.argv[1])), flush=True)
    sys.stdin.readline()  # stay until told to go
""")


def test_the_embedded_postgresql_is_stopped_only_by_the_process_that_started_it() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="msr-test-owner-"))
    pgdata = data_dir / "postgres"

    def user() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", STACK_PROCESS, str(data_dir)], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        assert process.stdout.readline().startswith("postgresql://")
        return process

    def leave(process: subprocess.Popen[str]) -> None:
        assert process.stdin is not None
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.wait(180) == 0  # a busy machine: a shutdown checkpoint can crawl

    owner = user()
    try:
        assert _server_running(pgdata)
        joiner = user()
        leave(joiner)
        assert _server_running(pgdata), "a process that joined stopped the server"
        second = user()  # joins too, and is still there when the owner leaves
        leave(owner)
        deadline = time.monotonic() + 120
        while _server_running(pgdata) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _server_running(pgdata), "the process that started the server left it up"
        leave(second)  # a joiner of a server that went away exits cleanly
    finally:
        if owner.poll() is None:
            owner.kill()
