"""Where the database is, and bringing its schema up to date.

Migrations are numbered SQL files applied in order, each in its own transaction, under an
advisory lock so that a worker and a starter starting together do not race. A migration may
have a Python step (`POST_MIGRATION`) that runs right after its SQL, in its transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from missed_session.config import Settings
from missed_session.store import embedded, projections, roles
from missed_session.store.chain import GENESIS, event_hash
from missed_session.store.connection import (
    Connection as Connection,  # noqa: PLC0414 - re-exported
)

MIGRATION_LOCK = 7_203_311
"""Advisory lock id held while migrating (arbitrary, fixed)."""
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# `Connection` is re-exported for the modules that still import it from here (clients.py).


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


async def _may_grant(connection: Connection) -> bool:
    """Whether this connection's role owns the trail (or is a superuser)."""
    allowed: bool = await connection.fetchval(
        "SELECT rolsuper OR EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename = 'audit_events' AND tableowner = current_user)"
        " FROM pg_roles WHERE rolname = current_user"
    )
    return allowed


class SchemaOutOfDateError(RuntimeError):
    """The database lacks migrations and this connection's role may not apply them."""


async def pending_migrations(connection: Connection) -> list[str]:
    """The names of the migrations this database lacks (read only: any role may ask)."""
    known = await connection.fetchval("SELECT to_regclass('public.schema_migrations')")
    done: set[int] = set()
    if known is not None:
        done = {row["version"] for row in await connection.fetch(
            "SELECT version FROM schema_migrations"
        )}
    return [migration.name for migration in migrations() if migration.version not in done]


async def migrate(connection: Connection) -> list[str]:
    """Apply the migrations this database lacks, then the roles' grants; returns the names.

    Run as the schema's owner (`roles.OWNER`), or as a superuser on a development database
    without separate roles.
    """
    applied: list[str] = []
    if not await pending_migrations(connection):
        # Up to date: nothing to create, and a role without DDL rights may ask. The owner
        # (or a superuser) still refreshes the grants, for roles created since.
        if await _may_grant(connection):
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await roles.apply_grants(connection)
        return applied
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
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await roles.apply_grants(connection)
    return applied


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir`; the service role's URL.

    The cluster's roles and database are created on the way, and only the process that
    started the server stops it, when it exits (`missed_session.store.embedded`).
    """
    return embedded.start(data_dir).service


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one: the service role's URL."""
    if settings.database_url:
        return settings.database_url
    return embedded_database_url(settings.data_dir)


def owner_database_url(settings: Settings) -> str | None:
    """The schema owner's URL migrations run over, when there is one.

    The embedded stack always has one; an external database has one when
    `database_owner_url` is set (otherwise the service's URL must already be migrated, or
    be a single role allowed to migrate).
    """
    if settings.database_url:
        return settings.database_owner_url
    return embedded.start(settings.data_dir).owner


async def _keep_session(connection: asyncpg.Connection) -> None:
    del connection


async def open_pool(url: str, *, owner_url: str | None = None, min_size: int = 1,
                    max_size: int = 10) -> asyncpg.Pool:
    """A pool on a migrated database.

    The pool connects with `url` (the service's role). When migrations are pending they run
    over `owner_url` (the schema owner's role), or, without one, over the pool itself (a
    development database with a single role); a role that may not migrate gets
    `SchemaOutOfDateError` naming what is missing.

    A connection given back is not reset beyond rolling back an open transaction (which
    asyncpg always does): the default reset is a second round trip on every release, as
    much as the one-statement audit append itself, and the service keeps no session state
    to clear (no `SET`, `LISTEN`, cursors or session-level advisory locks; locks are
    transaction-scoped). `tests/test_audit_append.py` checks a connection comes back clean.
    """
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                     reset=_keep_session)
    try:
        async with pool.acquire() as connection:
            missing = await pending_migrations(connection)
            if missing and owner_url is None:
                await _migrate_or_explain(connection, missing)
        if missing and owner_url is not None:
            owner = await asyncpg.connect(owner_url)
            try:
                await migrate(owner)
            finally:
                await owner.close()
    except BaseException:
        await pool.close()
        raise
    return pool


async def _migrate_or_explain(connection: Connection, missing: list[str]) -> None:
    try:
        await migrate(connection)
    except asyncpg.InsufficientPrivilegeError:
        msg = (
            f"the database lacks migrations {', '.join(missing)} and this role may not apply "
            "them: run them as the schema owner (setting database_owner_url)"
        )
        raise SchemaOutOfDateError(msg) from None
