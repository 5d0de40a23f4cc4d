"""Signed checkpoints: a trail rewritten with recomputed hashes fails `audit verify`.

The attacker is a superuser who switches the trigger off and rewrites rows, recomputing
every hash after the change, so the chain alone holds; the checkpoint, signed with a key
PostgreSQL never sees, does not.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

import starter
from missed_session.audit.verify import verify_session
from missed_session.store.audit import AuditStore
from missed_session.store.chain import GENESIS, ChainRow, event_hash
from missed_session.store.checkpoints import (
    Checkpointer,
    CheckpointSigner,
    compare,
    make_checkpoint,
    write,
)
from tests.conftest import TEST_KEYS
from tests.test_audit_chain import record_trail

KEY = b"k" * 32
SIGNER = CheckpointSigner({"c1": KEY}, "c1")


@pytest.fixture
async def attacker(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute("SET session_replication_role = replica")
    yield connection
    await connection.close()


async def rewrite(attacker: asyncpg.Connection, session_id: str,
                  rows: list[ChainRow]) -> None:
    """Replace the session's trail by `rows`, renumbered and with every hash recomputed."""
    await attacker.execute("DELETE FROM audit_events WHERE session_id = $1", session_id)
    prev = GENESIS
    for sequence, row in enumerate(rows, start=1):
        own = event_hash(session_id=session_id, sequence=sequence, event_type=row.event_type,
                         occurred_at=row.occurred_at, data=row.data, prev_hash=prev)
        await attacker.execute(
            "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
            " prev_hash, hash) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
            session_id, sequence, row.event_type, row.occurred_at, json.dumps(dict(row.data)),
            prev, own,
        )
        prev = own


async def checkpointed(pool: asyncpg.Pool, session_id: str = "s-1", *,
                       close: bool = True) -> list[ChainRow]:
    store = AuditStore(pool)
    await record_trail(store, session_id, close=close)
    assert await Checkpointer(pool, SIGNER).round() >= 1
    return await store.chain_rows(session_id)


async def test_the_checkpointer_checkpoints_each_grown_session_once(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    await record_trail(store, "s-1", close=True)
    await record_trail(store, "s-2")
    checkpointer = Checkpointer(pool, SIGNER)
    assert await checkpointer.round() == 2
    assert await checkpointer.round() == 0
    [closing] = await store.checkpoints("s-1")
    assert closing.closing
    assert closing.sequence == 6
    assert closing.verifies(SIGNER)
    [running] = await store.checkpoints("s-2")
    assert not running.closing
    report = await verify_session(store, "s-1", SIGNER)
    assert report.ok
    assert report.anchor == "closing checkpoint at row 6"


async def test_a_rewrite_with_recomputed_hashes_is_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    changed = ChainRow(**{**rows[3].__dict__, "data": {**rows[3].data, "result": "answered"}})
    await rewrite(attacker, "s-1", [*rows[:3], changed, *rows[4:]])
    assert (await verify_session(store, "s-1")).ok  # the chain alone is fooled
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert report.problem.startswith("row 4 (outreach_attempted) changed since its checkpoint")


async def test_an_inserted_row_is_named_inserted(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    forged = ChainRow(**{**rows[2].__dict__, "event_type": "clinician_decision_made",
                          "data": {"decision": "mark_safe"}})
    await rewrite(attacker, "s-1", [*rows[:3], forged, *rows[3:]])
    assert (await verify_session(store, "s-1")).ok
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert report.problem.startswith("row 4 (clinician_decision_made) was inserted since its "
                                     "checkpoint")


async def test_a_removed_row_is_named_missing(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    await rewrite(attacker, "s-1", [*rows[:1], *rows[2:]])
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert report.problem.startswith("checkpointed row 2 is missing since its checkpoint")


async def test_recomputed_hashes_over_the_same_content_are_named_rewritten(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    """Same events, but rechained from another genesis: content digests match, hashes not."""
    store = AuditStore(pool)
    rows = await checkpointed(pool, close=False)
    await attacker.execute("UPDATE audit_events SET hash = repeat('f', 64) WHERE sequence = 5")
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert "rewritten with recomputed hashes" in report.problem
    assert len(rows) == 5


async def test_a_forged_checkpoint_is_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    """One signed with a key the attacker made up (the database never had the real one)."""
    store = AuditStore(pool)
    rows = await checkpointed(pool, close=False)
    await rewrite(attacker, "s-1", rows[:4])
    forger = CheckpointSigner({"c1": b"x" * 32}, "c1")
    forged = make_checkpoint(await store.chain_rows("s-1"), forger, datetime.now(UTC))
    await attacker.execute("DELETE FROM audit_checkpoints")
    assert await write(pool, forged)
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem == ("the checkpoint at row 4 is forged: its signature (key 'c1') "
                              "does not verify")


async def test_rows_appended_after_a_closing_checkpoint_are_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    await rewrite(attacker, "s-1", [*rows, rows[4]])
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem == "row 7 (voicemail_left) was added after the closing checkpoint"


def test_compare_allows_rows_appended_after_an_ordinary_checkpoint() -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    rows = []
    prev = GENESIS
    for n in range(1, 4):
        own = event_hash(session_id="s", sequence=n, event_type="scheduled", occurred_at=at,
                         data={"n": n}, prev_hash=prev)
        rows.append(ChainRow("s", n, "scheduled", at, {"n": n}, prev, own))
        prev = own
    checkpoint = make_checkpoint(rows[:2], SIGNER, at)
    assert compare(rows, checkpoint) is None
    assert compare(rows[:2], checkpoint) is None
    assert compare(rows[:1], checkpoint) is not None


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, service_database_url: str) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID", "MSR_CHECKPOINT_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_CHECKPOINT_KEYS",
                       json.dumps({"c1": base64.b64encode(KEY).decode()}))
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)


@pytest.mark.usefixtures("cli_env")
async def test_audit_verify_names_the_rewritten_session(
    pool: asyncpg.Pool, attacker: asyncpg.Connection, capsys: pytest.CaptureFixture[str],
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool, "s-a")
    await record_trail(store, "s-b", close=True)
    assert await asyncio.to_thread(starter.main, ["audit", "verify", "--all"]) == 0
    out = capsys.readouterr().out
    assert out == "verified 2 sessions: 2 intact, 0 broken\n"
    await rewrite(attacker, "s-a", [*rows[:2], *rows[3:]])
    assert await asyncio.to_thread(starter.main, ["audit", "verify", "--all"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("BROKEN s-a: checkpointed row 3 is missing")
    assert out.splitlines()[-1] == "verified 2 sessions: 1 intact, 1 broken"
    assert await asyncio.to_thread(starter.main, ["audit", "verify", "s-b"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(", not checkpointed yet")
