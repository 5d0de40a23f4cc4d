"""How an `audit_events` row reads back: as an event, or with its hashes for verification.

Shared by the append path (which compares a retry with the row it finds) and the trail's
readers, so that both read a row the same way.
"""

from __future__ import annotations

import json

import asyncpg

from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.store.chain import ChainRow

EVENT_COLUMNS = "session_id, sequence, event_type, occurred_at, data"
"""The columns `event` reads, in a statement's SELECT list."""


def event(row: asyncpg.Record) -> AuditEvent:
    """The event a row holds."""
    return AuditEvent(
        session_id=row["session_id"],
        sequence=row["sequence"],
        event_type=AuditEventType(row["event_type"]),
        occurred_at=row["occurred_at"],
        data=json.loads(row["data"]),
    )


def chain_row(row: asyncpg.Record) -> ChainRow:
    """The row with its stored hashes (`EVENT_COLUMNS` and `prev_hash, hash`)."""
    return ChainRow(
        session_id=row["session_id"],
        sequence=row["sequence"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        data=json.loads(row["data"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
