"""The audit store against a real PostgreSQL: migrations, append-only, attendance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources

import asyncpg
import pytest

from missed_session.domain.models import AuditEvent, AuditEventType, Outcome
from missed_session.store.append import AuditConflictError, AuditParentMissingError
from missed_session.store.attendance import ATTENDANCE_WINDOW_DAYS, Attendance, AttendanceStore
from missed_session.store.audit import (
    AuditStore,
)
from missed_session.store.database import migrate, migrations

UNTIL = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLIENT = "c-1"


@pytest.fixture
async def fresh_database(postgres_server_url: str) -> AsyncIterator[str]:
    """An empty database, not yet migrated."""
    name = f"f_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield postgres_server_url.replace("/postgres?", f"/{name}?")
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _event(
    sequence: int = 1,
    event_type: AuditEventType = AuditEventType.SCHEDULED,
    session_id: str = "s-1",
    **data: str | int | bool | None,
) -> AuditEvent:
    return AuditEvent(
        session_id=session_id,
        sequence=sequence,
        event_type=event_type,
        occurred_at=UNTIL + timedelta(minutes=sequence),
        data=data,
    )


COUNT = {
    "audit_events": "SELECT count(*) FROM audit_events",
    "attendance": "SELECT count(*) FROM attendance",
    "schema_migrations": "SELECT count(*) FROM schema_migrations",
}


async def _count(pool: asyncpg.Pool, table: str) -> int:
    count: int = await pool.fetchval(COUNT[table])
    return count


# --- migrations ---------------------------------------------------------------------------


def test_shipped_migrations_are_every_sql_file_in_order() -> None:
    files = sorted(
        entry.name
        for entry in resources.files("missed_session.store.migrations").iterdir()
        if entry.name.endswith(".sql")
    )
    found = migrations()
    assert [migration.name for migration in found] == files
    assert [migration.version for migration in found] == list(range(1, len(files) + 1))


async def test_migrate_applies_once(fresh_database: str) -> None:
    connection = await asyncpg.connect(fresh_database)
    try:
        first = await migrate(connection)
        second = await migrate(connection)
        rows = await connection.fetch("SELECT version, name FROM schema_migrations")
    finally:
        await connection.close()
    names = [migration.name for migration in migrations()]
    assert first == names
    assert second == []
    assert sorted((row["version"], row["name"]) for row in rows) == [
        (migration.version, migration.name) for migration in migrations()
    ]


async def test_migrate_on_migrated_database_applies_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        assert await migrate(connection) == []
    assert await _count(pool, "schema_migrations") == len(migrations())


async def test_concurrent_migrations_do_not_race(fresh_database: str) -> None:
    connections = [await asyncpg.connect(fresh_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(connection) for connection in connections))
        count = await connections[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for connection in connections:
            await connection.close()
    applied = [name for result in results for name in result]
    assert sorted(applied) == [migration.name for migration in migrations()]
    assert count == len(migrations())


# --- append-only --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET event_type = 'cancelled'",
        "UPDATE audit_events SET data = '{}'::jsonb WHERE session_id = 's-1'",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE session_id = 's-1' AND sequence = 1",
        "TRUNCATE audit_events",
    ],
)
async def test_audit_events_refuse_change(pool: asyncpg.Pool, owner_database_url: str,
                                          statement: str) -> None:
    """The trigger refuses even the table's owner (the service's role has no such privilege
    at all: tests/test_roles.py)."""
    store = AuditStore(pool)
    assert (await store.record([_event(1, reason="booked")])).new
    owner = await asyncpg.connect(owner_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute(statement)
    finally:
        await owner.close()
    assert await store.trail("s-1") == [_event(1, reason="booked")]


async def test_append_is_idempotent(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    event = _event(1, AuditEventType.SCHEDULED, start="2026-03-02T09:00:00+00:00", minutes=15)
    assert (await store.record([event])).new
    assert not (await store.record([event])).new
    assert await store.trail("s-1") == [event]


async def test_a_closed_trail_refuses_a_different_event_in_its_place(
    pool: asyncpg.Pool,
) -> None:
    # (In an open trail another event supersedes it instead: tests/test_audit_superseded.py.)
    store = AuditStore(pool)
    assert (await store.record([_event(1, AuditEventType.CLOSED)])).new
    with pytest.raises(AuditConflictError, match="s-1#1"):
        await store.record([_event(1, AuditEventType.CANCELLED)])
    with pytest.raises(AuditConflictError):
        await store.record([_event(1, AuditEventType.CLOSED, extra=True)])
    assert [event.event_type for event in await store.trail("s-1")] == [AuditEventType.CLOSED]


async def test_trail_is_ordered_and_per_session(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    events = [
        _event(1, AuditEventType.SCHEDULED),
        _event(1, AuditEventType.SCHEDULED, session_id="s-2"),
        _event(2, AuditEventType.GRACE_PERIOD_EXPIRED, minutes=15, late=False, note=None),
        _event(3, AuditEventType.THERAPIST_ALERTED),
    ]
    for event in events:
        assert (await store.record([event])).new
    trail = await store.trail("s-1")
    assert [event.sequence for event in trail] == [1, 2, 3]
    assert trail[1] == events[2]
    assert await store.trail("s-404") == []


# --- attendance ---------------------------------------------------------------------------


async def _attended(
    pool: asyncpg.Pool, session_id: str, start: datetime, outcome: Outcome, client_ref: str = CLIENT
) -> None:
    await pool.execute(
        "INSERT INTO attendance (session_id, client_ref, therapist_id, start_at, outcome,"
        " closed_at) VALUES ($1, $2, 't-ana', $3, $4, $3)",
        session_id,
        client_ref,
        start,
        outcome.value,
    )


async def _summary(
    pool: asyncpg.Pool, current: Outcome = Outcome.REACHED, session_id: str = "s-now"
) -> tuple[int, int, int, int]:
    summary = await AttendanceStore(pool).summary(
        client_ref=CLIENT, session_id=session_id, until=UNTIL, current=current
    )
    assert summary.window_days == ATTENDANCE_WINDOW_DAYS == 90
    return (summary.sessions, summary.no_shows, summary.consecutive_no_shows, summary.late_arrivals)


async def test_first_session_counts_only_itself(pool: asyncpg.Pool) -> None:
    assert await _summary(pool, Outcome.REACHED) == (1, 1, 1, 0)
    assert await _summary(pool, Outcome.ATTENDED_LATE) == (1, 0, 0, 1)


async def test_attendance_summary_counts_the_window(pool: asyncpg.Pool) -> None:
    day = timedelta(days=1)
    history = [
        ("a", UNTIL - 7 * day, Outcome.UNREACHABLE_ESCALATED),
        ("b", UNTIL - 14 * day, Outcome.REACHED),
        ("c", UNTIL - 21 * day, Outcome.ATTENDED_LATE),
        ("d", UNTIL - 28 * day, Outcome.UNREACHABLE_ESCALATION_BLOCKED),
        ("e", UNTIL - 35 * day, Outcome.ATTENDED),
        ("f", UNTIL - 42 * day, Outcome.ATTENDED_LATE),
        ("edge", UNTIL - 90 * day, Outcome.REACHED),  # exactly 90 days back: inside
    ]
    ignored = [
        ("old", UNTIL - 90 * day - timedelta(seconds=1), Outcome.REACHED),
        ("older", UNTIL - 200 * day, Outcome.REACHED),
        ("later", UNTIL + day, Outcome.REACHED),
        ("same-time", UNTIL, Outcome.REACHED),
        ("cancelled", UNTIL - 3 * day, Outcome.CANCELLED),
    ]
    for session_id, start, outcome in history + ignored:
        await _attended(pool, session_id, start, outcome)
    await _attended(pool, "other-client", UNTIL - day, Outcome.REACHED, client_ref="c-2")
    await _attended(pool, "s-now", UNTIL, Outcome.REACHED)  # this session, already closed

    sessions, no_shows, consecutive, late = await _summary(pool, Outcome.REACHED)
    assert sessions == 1 + len(history)
    assert no_shows == 1 + 4  # this one, a, b, d, edge
    assert consecutive == 3  # this one, a, b; c (late) was attended, the cancelled is skipped
    assert late == 2


async def test_consecutive_count_stops_at_first_attended(pool: asyncpg.Pool) -> None:
    day = timedelta(days=1)
    await _attended(pool, "a", UNTIL - 7 * day, Outcome.ATTENDED)
    await _attended(pool, "b", UNTIL - 14 * day, Outcome.REACHED)
    await _attended(pool, "c", UNTIL - 21 * day, Outcome.REACHED)
    assert await _summary(pool, Outcome.REACHED) == (4, 3, 1, 0)
    # When this session was attended, nothing is consecutive.
    assert await _summary(pool, Outcome.ATTENDED_LATE) == (4, 2, 0, 1)


async def test_consecutive_count_ignores_insertion_order(pool: asyncpg.Pool) -> None:
    day = timedelta(days=1)
    await _attended(pool, "old-miss", UNTIL - 21 * day, Outcome.REACHED)
    await _attended(pool, "recent-miss", UNTIL - 7 * day, Outcome.REACHED)
    await _attended(pool, "middle-attended", UNTIL - 14 * day, Outcome.ATTENDED)
    assert await _summary(pool, Outcome.REACHED) == (4, 3, 2, 0)


# --- closing ------------------------------------------------------------------------------


async def _open_trail(store: AuditStore) -> list[AuditEvent]:
    """Events 1 to 4 of s-1: the `closed` event (5) is appended after its parent."""
    events = [_event(n, AuditEventType.OUTREACH_ATTEMPTED, attempt=n) for n in range(1, 5)]
    for event in events:
        assert (await store.record([event])).new
    return events


async def test_record_closing_writes_event_and_attendance(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    opened = await _open_trail(store)
    closed = _event(5, AuditEventType.CLOSED, outcome="reached")
    start = UNTIL - timedelta(hours=1)
    written = await store.record([closed], attendance=Attendance(
        client_ref=CLIENT, therapist_id="t-ana", start=start, outcome=Outcome.REACHED))
    assert written.events == written.new == (closed,)
    assert await store.trail("s-1") == [*opened, closed]
    row = await pool.fetchrow("SELECT * FROM attendance WHERE session_id = 's-1'")
    assert row is not None
    assert (
        row["client_ref"],
        row["therapist_id"],
        row["start_at"],
        row["outcome"],
        row["closed_at"],
    ) == (CLIENT, "t-ana", start, "reached", closed.occurred_at)

    # A retry of the very same call writes nothing new.
    again = await store.record([closed], attendance=Attendance(
        client_ref=CLIENT, therapist_id="t-ana", start=start, outcome=Outcome.REACHED))
    assert again.events == (closed,)
    assert again.new == ()
    assert await _count(pool, "audit_events") == 5
    assert await _count(pool, "attendance") == 1


async def test_record_closing_writes_neither_when_attendance_fails(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    opened = await _open_trail(store)
    with pytest.raises(asyncpg.NotNullViolationError):
        await store.record([_event(5, AuditEventType.CLOSED)], attendance=Attendance(
            client_ref=None,  # type: ignore[arg-type]
            therapist_id="t-ana", start=UNTIL, outcome=Outcome.REACHED))
    assert await store.trail("s-1") == opened
    assert await _count(pool, "attendance") == 0


async def test_record_closing_follows_a_superseded_row_with_its_attendance(
    pool: asyncpg.Pool,
) -> None:
    # Another event at its place: a failed workflow task's row, superseded; the closing
    # lands after the marker, and its attendance row with it.
    store = AuditStore(pool)
    await _open_trail(store)
    assert (await store.record([_event(5, AuditEventType.OUTREACH_FAILED)])).new
    closed = _event(5, AuditEventType.CLOSED, outcome="reached")
    recorded = await store.record([closed], attendance=Attendance(
        client_ref=CLIENT, therapist_id="t-ana", start=UNTIL, outcome=Outcome.REACHED))
    assert recorded.events == (closed.model_copy(update={"sequence": 7}),)
    assert await _count(pool, "attendance") == 1


async def test_record_closing_writes_neither_when_the_trail_is_closed(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    await _open_trail(store)
    assert (await store.record([_event(5, AuditEventType.CLOSED, outcome="attended")])).new
    with pytest.raises(AuditConflictError):
        await store.record([_event(5, AuditEventType.CLOSED)], attendance=Attendance(
            client_ref=CLIENT, therapist_id="t-ana", start=UNTIL, outcome=Outcome.REACHED))
    assert await _count(pool, "attendance") == 0


async def test_record_closing_writes_neither_when_the_parent_is_missing(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    with pytest.raises(AuditParentMissingError, match="s-1#5"):
        await store.record([_event(5, AuditEventType.CLOSED)], attendance=Attendance(
            client_ref=CLIENT, therapist_id="t-ana", start=UNTIL, outcome=Outcome.REACHED))
    assert await _count(pool, "audit_events") == 0
    assert await _count(pool, "attendance") == 0
