"""Retention: `audit purge` deletes only closed sessions older than the retention period,
through the one database function allowed to, and leaves its own record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import starter
from missed_session.audit.cli import retention_limit
from missed_session.store.audit import AuditStore
from tests.support.servers import TEST_KEYS

LONG_AGO = datetime(2015, 3, 2, 9, 0, tzinfo=UTC)
CUTOFF = datetime(2017, 1, 1, tzinfo=UTC)


@pytest.fixture
async def owner_pool(owner_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The schema owner's: only it may set `recorded_at` (the service's role may not)."""
    pool = await asyncpg.create_pool(owner_database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def old_session(pool: asyncpg.Pool, session_id: str, *, at: datetime,
                      closed: bool = True) -> None:
    """A session recorded at `at` (an import of old records, as far as the table knows)."""
    types = ["scheduled", "checked_in", *(["closed"] if closed else [])]
    for sequence, event_type in enumerate(types, start=1):
        await pool.execute(
            "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at,"
            " recorded_at) VALUES ($1, $2, $3, $4, $4)",
            session_id, sequence, event_type, at + timedelta(minutes=sequence),
        )
    if closed:
        await pool.execute(
            "INSERT INTO attendance (session_id, client_ref, therapist_id, start_at, outcome,"
            " closed_at) VALUES ($1, 'c-1', 't-ana', $2, 'attended', $2)", session_id, at,
        )


async def sessions(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT DISTINCT session_id FROM audit_events ORDER BY 1")
    return [row["session_id"] for row in rows]


async def test_purge_deletes_only_old_closed_sessions_and_records_itself(
    pool: asyncpg.Pool, owner_pool: asyncpg.Pool,
) -> None:
    await old_session(owner_pool, "s-old", at=LONG_AGO)
    await old_session(owner_pool, "s-old-open", at=LONG_AGO, closed=False)
    await old_session(owner_pool, "s-after-cutoff", at=CUTOFF + timedelta(days=1))
    await old_session(owner_pool, "s-young", at=datetime.now(UTC) - timedelta(days=1))

    record = await AuditStore(pool).purge(cutoff=CUTOFF, retention_years=6,
                                          requested_by="compliance-1", max_sessions=100)

    assert (record.sessions, record.events) == (1, 3)
    assert await sessions(pool) == ["s-after-cutoff", "s-old-open", "s-young"]
    assert await pool.fetchval("SELECT count(*) FROM attendance WHERE session_id = 's-old'") == 0
    row = await pool.fetchrow("SELECT * FROM audit_purges WHERE id = $1", record.purge_id)
    assert row is not None
    assert (row["cutoff"], row["retention_years"], row["requested_by"], row["session_ids"]) == (
        CUTOFF, 6, "compliance-1", ["s-old"]
    )


async def test_the_database_refuses_a_cutoff_inside_the_retention_period(
    pool: asyncpg.Pool, owner_pool: asyncpg.Pool,
) -> None:
    await old_session(owner_pool, "s-young", at=datetime.now(UTC) - timedelta(days=400))
    store = AuditStore(pool)
    for cutoff, years in ((datetime.now(UTC), 6), (datetime.now(UTC) - timedelta(days=365), 6),
                          (LONG_AGO, 5)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="retention"):
            await store.purge(cutoff=cutoff, retention_years=years, requested_by="x",
                              max_sessions=10)
    assert await sessions(pool) == ["s-young"]
    assert await pool.fetchval("SELECT count(*) FROM audit_purges") == 0


async def test_the_purge_flag_by_hand_cannot_delete_young_rows(
    pool: asyncpg.Pool, owner_pool: asyncpg.Pool,
) -> None:
    """Even the owner, who has the DELETE privilege, meets the trigger."""
    await old_session(owner_pool, "s-young", at=datetime.now(UTC) - timedelta(days=30))
    async with owner_pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL msr.audit_purge = 'on'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute("DELETE FROM audit_events")
    assert await sessions(pool) == ["s-young"]


async def test_purge_records_cannot_be_changed(pool: asyncpg.Pool,
                                                owner_pool: asyncpg.Pool) -> None:
    await AuditStore(pool).purge(cutoff=CUTOFF, retention_years=6, requested_by="x",
                                 max_sessions=10)
    for statement in ("UPDATE audit_purges SET sessions = 0", "DELETE FROM audit_purges",
                      "TRUNCATE audit_purges"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await pool.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner_pool.execute(statement)


def test_the_retention_limit_handles_a_leap_day() -> None:
    assert retention_limit(datetime(2028, 2, 29, tzinfo=UTC), 6) == datetime(2022, 2, 28,
                                                                              tzinfo=UTC)


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, service_database_url: str) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID", "MSR_AUDIT_RETENTION_YEARS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(starter.main, list(argv))


@pytest.mark.usefixtures("cli_env")
async def test_audit_purge_command(
    pool: asyncpg.Pool, owner_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await old_session(owner_pool, "s-old", at=LONG_AGO)
    await old_session(owner_pool, "s-young", at=datetime.now(UTC) - timedelta(days=2))

    today = datetime.now(UTC).date()
    assert await cli("audit", "purge", "--before", today.isoformat()) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: --before: {today.isoformat()} is inside the retention "
                            "period of 6 years; the latest allowed is ")

    monkeypatch.setenv("MSR_AUDIT_RETENTION_YEARS", "10")
    ten_years_ago = retention_limit(datetime.now(UTC), 10).date()
    after_that = (ten_years_ago + timedelta(days=2)).isoformat()
    assert await cli("audit", "purge", "--before", after_that) == 2
    assert "inside the retention period of 10 years" in capsys.readouterr().err

    monkeypatch.setenv("MSR_AUDIT_RETENTION_YEARS", "5")
    assert await cli("audit", "purge", "--before", "2016-01-01") == 2
    assert capsys.readouterr().err.startswith("error: setting audit_retention_years: ")

    monkeypatch.delenv("MSR_AUDIT_RETENTION_YEARS")
    assert await cli("audit", "purge", "--before", "2016-01-01",
                     "--requested-by", "compliance-1") == 0
    out = capsys.readouterr().out
    assert out.startswith("purged 1 sessions (3 audit events) recorded before 2016-01-01;")
    assert await sessions(pool) == ["s-young"]
    assert await cli("audit", "purge", "--before", "not-a-date") == 2
    assert "argument --before" in capsys.readouterr().err
