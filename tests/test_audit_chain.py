"""Tamper evidence: the hash chain the store writes, and `audit verify` finding the first
changed, missing or inserted row.

The "attacker" here is a superuser who switches the append-only trigger off for their own
connection (`session_replication_role = replica`) and edits the table directly.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

import starter
from missed_session.audit.verify import verify_all, verify_session
from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.store.audit import AuditStore
from missed_session.store.chain import GENESIS, ChainRow, event_hash, verify_chain
from missed_session.store.database import migrate, migrations
from tests.support.audit_chain import START, TRAIL, event, record_trail
from tests.support.servers import TEST_KEYS


@pytest.fixture
async def attacker(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection with the append-only trigger switched off."""
    connection = await asyncpg.connect(database_url)
    await connection.execute("SET session_replication_role = replica")
    yield connection
    await connection.close()


async def problem(store: AuditStore, session_id: str = "s-1") -> str | None:
    return (await verify_session(store, session_id)).problem


# -- the chain as written -------------------------------------------------------------------


async def test_every_row_links_to_the_previous_one(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    await record_trail(store)
    rows = await store.chain_rows("s-1")
    assert rows[0].prev_hash == GENESIS
    assert [row.prev_hash for row in rows[1:]] == [row.hash for row in rows[:-1]]
    for row in rows:
        assert row.hash == event_hash(session_id=row.session_id, sequence=row.sequence,
                                      event_type=row.event_type, occurred_at=row.occurred_at,
                                      data=row.data, prev_hash=row.prev_hash or "")
    report = await verify_session(store, "s-1")
    assert report.ok
    assert (report.rows, report.head) == (5, rows[-1].hash)


async def test_retried_appends_write_nothing_twice_and_keep_the_chain(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    await record_trail(store)
    before = await store.chain_rows("s-1")
    # Retries of every event, some at once (as activity retries and a slow first try can be).
    results = await asyncio.gather(*(store.record([event("s-1", n)]) for n in (1, 2, 3, 3, 5, 5)))
    assert [bool(result.new) for result in results] == [False] * 6
    assert await store.chain_rows("s-1") == before
    assert await problem(store) is None


async def test_concurrent_first_appends_write_one_row(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    results = await asyncio.gather(*(store.record([event("s-1", 1)]) for _ in range(5)))
    assert sorted(bool(result.new) for result in results) == [False] * 4 + [True]
    assert await problem(store) is None


async def test_values_hash_as_they_read_back(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    odd = AuditEvent(session_id="s-1", sequence=1, event_type=AuditEventType.SCHEDULED,
                     occurred_at=START, data={"big": 10**20, "negative": -7, "none": None,
                                              "t": "é ✓ 😀 \"q\" \\ \n", "yes": True,
                                              "prev_hash": GENESIS})
    assert (await store.record([odd])).new
    assert await store.trail("s-1") == [odd]
    assert await problem(store) is None


def test_the_encoding_covers_every_field() -> None:
    base = {"session_id": "s-1", "sequence": 1, "event_type": "scheduled",
            "occurred_at": START, "data": {"a": 1}, "prev_hash": GENESIS}
    reference = event_hash(**base)  # type: ignore[arg-type]
    changes = {"session_id": "s-2", "sequence": 2, "event_type": "cancelled",
               "occurred_at": START + timedelta(microseconds=1), "data": {"a": 2},
               "prev_hash": "f" * 64}
    for name, value in changes.items():
        assert event_hash(**{**base, name: value}) != reference, name  # type: ignore[arg-type]
    # The same instant in another time zone is the same event.
    other_zone = START.astimezone(datetime.now().astimezone().tzinfo)
    assert event_hash(**{**base, "occurred_at": other_zone}) == reference  # type: ignore[arg-type]


# -- tampering ------------------------------------------------------------------------------


async def test_the_database_itself_refuses_update_and_delete(
    pool: asyncpg.Pool, database_url: str,
) -> None:
    """The service's role has no such privilege; even a superuser meets the trigger."""
    store = AuditStore(pool)
    await record_trail(store)
    superuser = await asyncpg.connect(database_url)
    try:
        for statement in ("UPDATE audit_events SET hash = NULL",
                          "DELETE FROM audit_events WHERE sequence = 5",
                          "TRUNCATE audit_events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await pool.execute(statement)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await superuser.execute(statement)
    finally:
        await superuser.close()
    assert await problem(store) is None


async def test_a_changed_row_is_named(pool: asyncpg.Pool, attacker: asyncpg.Connection) -> None:
    store = AuditStore(pool)
    await record_trail(store)
    await attacker.execute(
        "UPDATE audit_events SET data = $1::jsonb WHERE session_id = 's-1' AND sequence = 4",
        json.dumps({"attempt": 1, "channel": "call", "result": "answered"}),
    )
    assert await problem(store) == (
        "row 4 (outreach_attempted) was changed: its content does not match its hash"
    )


async def test_a_changed_row_with_a_recomputed_hash_is_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection
) -> None:
    store = AuditStore(pool)
    await record_trail(store)
    row = (await store.chain_rows("s-1"))[2]
    forged = event_hash(session_id="s-1", sequence=3, event_type="therapist_alerted",
                        occurred_at=row.occurred_at, data={"notice": "someone else"},
                        prev_hash=row.prev_hash or "")
    await attacker.execute(
        "UPDATE audit_events SET data = $1::jsonb, hash = $2"
        " WHERE session_id = 's-1' AND sequence = 3",
        json.dumps({"notice": "someone else"}), forged,
    )
    assert await problem(store) == (
        "row 3 was changed (its hash was recomputed): row 4 links to a different version of it"
    )


async def test_a_deleted_row_is_named(pool: asyncpg.Pool, attacker: asyncpg.Connection) -> None:
    store = AuditStore(pool)
    await record_trail(store)
    await attacker.execute("DELETE FROM audit_events WHERE session_id = 's-1' AND sequence = 3")
    assert await problem(store) == "row 3 is missing (the trail jumps from 2 to 4)"


async def test_a_deleted_row_hidden_by_renumbering_is_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection
) -> None:
    store = AuditStore(pool)
    await record_trail(store)
    await attacker.execute("DELETE FROM audit_events WHERE session_id = 's-1' AND sequence = 2")
    for sequence in (3, 4, 5):
        await attacker.execute(
            "UPDATE audit_events SET sequence = sequence - 1"
            " WHERE session_id = 's-1' AND sequence = $1", sequence,
        )
    assert await problem(store) == (
        "row 2 is missing (the rows after it were renumbered to close it)"
    )


async def test_the_lost_end_of_a_closed_session_is_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection
) -> None:
    store = AuditStore(pool)
    await record_trail(store, close=True)
    assert await problem(store) is None
    await attacker.execute("DELETE FROM audit_events WHERE session_id = 's-1' AND sequence = 6")
    assert await problem(store) == (
        "row 6 is missing: the session closed but its trail has no `closed` event"
    )


async def test_an_inserted_row_is_named(pool: asyncpg.Pool, attacker: asyncpg.Connection) -> None:
    """Room is made at 3 by renumbering, and the forged row links correctly to row 2."""
    store = AuditStore(pool)
    await record_trail(store)
    for sequence in (5, 4, 3):
        await attacker.execute(
            "UPDATE audit_events SET sequence = sequence + 1"
            " WHERE session_id = 's-1' AND sequence = $1", sequence,
        )
    row2 = (await store.chain_rows("s-1"))[1]
    occurred_at = START + timedelta(minutes=2, seconds=30)
    data = {"channel": "call", "responder": "client", "note": ""}
    forged = event_hash(session_id="s-1", sequence=3, event_type="client_responded",
                        occurred_at=occurred_at, data=data, prev_hash=row2.hash or "")
    await attacker.execute(
        "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
        " prev_hash, hash) VALUES ('s-1', 3, 'client_responded', $1, $2::jsonb, $3, $4)",
        occurred_at, json.dumps(data), row2.hash, forged,
    )
    assert await problem(store) == (
        "row 3 was inserted (the rows after it were renumbered to make room)"
    )


async def test_a_row_inserted_after_the_close_is_named(
    pool: asyncpg.Pool,
) -> None:
    """Inserting needs no privilege the service lacks; the chain still shows it."""
    store = AuditStore(pool)
    await record_trail(store, close=True)
    await pool.execute(
        "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at)"
        " VALUES ('s-1', 7, 'escalation_sent', now())"
    )
    assert await problem(store) == (
        "row 7 (escalation_sent) was inserted after the session closed"
    )


def test_a_row_linking_past_its_predecessor_means_the_predecessor_was_inserted() -> None:
    rows: list[ChainRow] = []
    prev = GENESIS
    for sequence, (event_type, data) in enumerate(TRAIL[:3], start=1):
        occurred_at = START + timedelta(minutes=sequence)
        link = rows[0].hash if sequence == 3 else prev  # row 3 still links to row 1
        own = event_hash(session_id="s-1", sequence=sequence, event_type=event_type.value,
                         occurred_at=occurred_at, data=data, prev_hash=link or "")
        rows.append(ChainRow("s-1", sequence, event_type.value, occurred_at, data, link, own))
        prev = own
    assert verify_chain("s-1", rows).problem == "row 2 was inserted: row 3 links to row 1"


# -- every session, and rows written before the chain existed --------------------------------


async def test_verify_all_reports_each_session(
    pool: asyncpg.Pool, attacker: asyncpg.Connection
) -> None:
    store = AuditStore(pool)
    for session_id in ("s-a", "s-b", "s-c"):
        await record_trail(store, session_id)
    await attacker.execute("DELETE FROM audit_events WHERE session_id = 's-b' AND sequence = 1")
    reports = [report async for report in verify_all(store, page=2)]
    assert [(report.session_id, report.problem) for report in reports] == [
        ("s-a", None),
        ("s-b", "row 1 is missing (the trail jumps from 0 to 2)"),
        ("s-c", None),
    ]


async def test_rows_written_before_the_chain_are_chained_by_the_migration(
    postgres_server_url: str,
) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server_url.replace("/postgres?", f"/{name}?")
    connection = await asyncpg.connect(url)
    try:
        first = migrations()[0]
        await connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await connection.execute(first.sql)
        await connection.execute("INSERT INTO schema_migrations VALUES (1, $1)", first.name)
        for session_id in ("s-old-1", "s-old-2"):
            for sequence in (1, 2, 3):
                old = event(session_id, sequence)
                await connection.execute(
                    "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at,"
                    " data) VALUES ($1, $2, $3, $4, $5::jsonb)",
                    old.session_id, old.sequence, old.event_type.value, old.occurred_at,
                    json.dumps(old.data),
                )
        assert "0002_hash_chain.sql" in await migrate(connection)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            store = AuditStore(pool)
            assert [(r.session_id, r.ok) async for r in verify_all(store)] == [
                ("s-old-1", True), ("s-old-2", True),
            ]
            # The trigger is back on after the backfill, and new appends continue the chain.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await pool.execute("DELETE FROM audit_events")
            assert (await store.record([event("s-old-1", 4)])).new
            assert await problem(store, "s-old-1") is None
        finally:
            await pool.close()
    finally:
        await connection.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, service_database_url: str) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(starter.main, list(argv))


@pytest.mark.usefixtures("cli_env")
async def test_audit_verify_command(
    pool: asyncpg.Pool, attacker: asyncpg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    store = AuditStore(pool)
    await record_trail(store, "s-a")
    await record_trail(store, "s-b")
    head = (await store.chain_rows("s-a"))[-1].hash

    assert await cli("audit", "verify", "s-a") == 0
    assert capsys.readouterr().out == f"OK s-a: 5 rows, head {head}\n"
    assert await cli("audit", "verify", "--all") == 0
    assert capsys.readouterr().out == (  # trails without `closed`: running, or stopped early
        "verified 2 sessions: 2 intact, 0 broken; 2 not closed (running, or stopped early: "
        "`audit replay --all` tells which)\n"
    )

    await attacker.execute("DELETE FROM audit_events WHERE session_id = 's-b' AND sequence = 4")
    assert await cli("audit", "verify", "s-b") == 1
    assert capsys.readouterr().out == (
        "BROKEN s-b: row 4 is missing (the trail jumps from 3 to 5)\n"
    )
    assert await cli("audit", "verify", "--all") == 1
    assert capsys.readouterr().out.splitlines() == [
        "BROKEN s-b: row 4 is missing (the trail jumps from 3 to 5)",
        "verified 2 sessions: 1 intact, 1 broken; 2 not closed (running, or stopped early: "
        "`audit replay --all` tells which)",
    ]
    assert await cli("audit", "verify", "s-nobody") == 1
    assert capsys.readouterr().out == "no audit events for session s-nobody\n"
    # The plain form still prints the trail.
    assert await cli("audit", "s-a") == 0
    assert len(capsys.readouterr().out.splitlines()) == 5


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["audit", "verify"], "error: one of the arguments SESSION_ID --all is required"),
        (["audit", "verify", "s-1", "--all"], "error: argument --all: not allowed with"),
        (["audit", "verify", "a b"], "error: session_id: "),
        (["audit", "replay", "../x"], "error: session_id: "),
    ],
)
async def test_audit_action_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert await cli(*argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(expected)
    assert captured.out == ""
