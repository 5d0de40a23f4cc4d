"""Helpers first written for tests/test_audit_checkpoints.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from missed_session.store.chain import GENESIS, ChainRow, event_hash
from missed_session.store.checkpoints import CheckpointSigner

KEY = b"k" * 32


SIGNER = CheckpointSigner({"c1": KEY}, "c1")


FORGED_TABLES = ("audit_events", "audit_checkpoints", "checkpoint_log", "attendance")


@pytest.fixture
async def owner(owner_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The schema's owner: may switch its own tables' triggers off (no superuser needed)."""
    connection = await asyncpg.connect(owner_database_url)
    yield connection
    await connection.close()


async def forge(owner: asyncpg.Connection, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Run statements as the owner with the append-only triggers off, then on again."""
    async with owner.transaction():
        for table in FORGED_TABLES:
            await owner.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for sql, args in statements:
            await owner.execute(sql, *args)
        for table in FORGED_TABLES:
            await owner.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


async def owner_rewrite(owner: asyncpg.Connection, session_id: str,
                        rows: list[ChainRow]) -> None:
    """As `rewrite`, as the owner: the trail replaced, every hash recomputed."""
    statements: list[tuple[str, tuple[object, ...]]] = [
        ("DELETE FROM audit_events WHERE session_id = $1", (session_id,))]
    prev = GENESIS
    for sequence, row in enumerate(rows, start=1):
        own = event_hash(session_id=session_id, sequence=sequence, event_type=row.event_type,
                         occurred_at=row.occurred_at, data=row.data, prev_hash=prev)
        statements.append((
            "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
            " prev_hash, hash) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
            (session_id, sequence, row.event_type, row.occurred_at,
             json.dumps(dict(row.data)), prev, own)))
        prev = own
    await forge(owner, *statements)


def mark_safe(session_id: str, after: ChainRow) -> ChainRow:
    return ChainRow(session_id, 0, "clinician_decision_made",
                    after.occurred_at + timedelta(seconds=30),
                    {"decision": "mark_safe", "clinician_id": "t-ana",
                     "reason": "spoke to the client"}, None, None)

