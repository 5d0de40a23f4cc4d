"""The audit history: its trails written through the one append path, and read back.

`AuditStore` is the trail's job only: it writes through `missed_session.store.append`
(which says how an event is chained, folded into the projections and made idempotent),
reads trails and their hashes for review, lists sessions, and keeps the history's
maintenance (purge, projection rebuild). The notices' inbox rows (`store.inbox`), the
attendance figures (`store.attendance`) and follow-up plans (`store.follow_up_plans`) are
stores of their own. Every statement is parameterised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from temporalio.client import WorkflowHistory

from missed_session.domain.models import AuditEvent
from missed_session.store import append, checkpoints, history_archive, projections, rows
from missed_session.store.append import Recorded
from missed_session.store.attendance import Attendance
from missed_session.store.chain import ChainRow


@dataclass(frozen=True)
class PurgeRecord:
    """What one purge deleted; its row in `audit_purges` is the purge's own audit record."""

    purge_id: int
    """Id of the purge's record."""
    sessions: int
    """Sessions deleted whole."""
    events: int
    """Audit rows deleted."""


class AuditStore:
    """Appends trails' events (one path) and reads the audit history back."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool it writes through (for the checkpoint log's readers)."""
        return self._pool

    async def record(self, batch: Sequence[AuditEvent], *,
                     attendance: Attendance | None = None, expiry: bool = False) -> Recorded:
        """Append a trail's next events: the one append path (`store.append.record`).

        With `attendance`, the batch is the `closed` event, written with its attendance row;
        with `expiry`, the append also reads when the grace period expired (`expired_at`).
        """
        async with self._pool.acquire() as connection:
            return await append.record(connection, batch, attendance=attendance,
                                       expiry=expiry)

    async def recorded(self, session_id: str, sequence: int) -> AuditEvent | None:
        """The event recorded at this place of the session's trail, if any."""
        row = await self._pool.fetchrow(
            f"SELECT {rows.EVENT_COLUMNS} FROM audit_events"  # noqa: S608
            " WHERE session_id = $1 AND sequence = $2",
            session_id, sequence,
        )
        return None if row is None else rows.event(row)

    async def trail(self, session_id: str) -> list[AuditEvent]:
        """The session's events in order."""
        found = await self._pool.fetch(
            f"SELECT {rows.EVENT_COLUMNS} FROM audit_events"  # noqa: S608
            " WHERE session_id = $1 ORDER BY sequence",
            session_id,
        )
        return [rows.event(row) for row in found]

    async def chain_rows(self, session_id: str) -> list[ChainRow]:
        """The session's rows with their stored hashes, for verification."""
        found = await self._pool.fetch(
            f"SELECT {rows.EVENT_COLUMNS}, prev_hash, hash"  # noqa: S608
            " FROM audit_events WHERE session_id = $1 ORDER BY sequence",
            session_id,
        )
        return [rows.chain_row(row) for row in found]

    async def archived_history(self, session_id: str) -> WorkflowHistory | None:
        """The session's Temporal history as archived at close (payloads still sealed)."""
        found = await history_archive.archived(self._pool, session_id)
        return None if found is None else found.workflow_history()

    async def checkpoints(self, session_id: str) -> list[checkpoints.Checkpoint]:
        """The session's signed checkpoints, latest first."""
        return await checkpoints.checkpoints_of(self._pool, session_id)

    async def session_ids(self, *, after: str = "", limit: int = 500) -> list[str]:
        """Sessions with an audit trail or an attendance row, in order, one page after `after`."""
        found = await self._pool.fetch(
            "SELECT session_id FROM (SELECT session_id FROM audit_events"
            " UNION SELECT session_id FROM attendance) AS s WHERE session_id > $1"
            " ORDER BY session_id LIMIT $2",
            after, limit,
        )
        return [row["session_id"] for row in found]

    async def sessions_starting(self, start: datetime, end: datetime) -> list[str]:
        """Sessions booked to start in [start, end) (their `scheduled` row), in id order."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT session_id FROM audit_events WHERE event_type = 'scheduled'"
            " AND (data->>'start')::timestamptz >= $1 AND (data->>'start')::timestamptz < $2"
            " ORDER BY session_id", start, end)
        return [row["session_id"] for row in rows]

    async def session_count(self) -> int:
        """How many sessions have an audit trail or an attendance row."""
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM (SELECT session_id FROM audit_events"
            " UNION SELECT session_id FROM attendance) AS s"
        )
        return count

    async def open_session_count(self) -> int:
        """Sessions with a trail but no attendance row: running, or stopped before closing."""
        count: int = await self._pool.fetchval(
            "SELECT count(DISTINCT e.session_id) FROM audit_events AS e"
            " WHERE NOT EXISTS (SELECT 1 FROM attendance AS a WHERE a.session_id = e.session_id)"
        )
        return count

    async def is_closed(self, session_id: str) -> bool:
        """Whether the session's attendance row (written with `closed`) exists."""
        found = await self._pool.fetchval(
            "SELECT 1 FROM attendance WHERE session_id = $1", session_id
        )
        return found is not None

    async def purge(self, *, cutoff: datetime, retention_years: int, requested_by: str,
                    max_sessions: int) -> PurgeRecord:
        """Delete closed sessions whose every event is older than `cutoff`; record the purge.

        Only `purge_audit_sessions()` can delete audit rows, and the database refuses a
        cutoff inside the retention period, whatever the caller says.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            purge_id: int = await connection.fetchval(
                "SELECT purge_audit_sessions($1, $2, $3, $4)",
                cutoff, retention_years, requested_by, max_sessions,
            )
            row = await connection.fetchrow(
                "SELECT id, sessions, events, session_ids FROM audit_purges WHERE id = $1",
                purge_id,
            )
            assert row is not None
            await projections.forget(connection, row["session_ids"])
        return PurgeRecord(purge_id=row["id"], sessions=row["sessions"], events=row["events"])

    async def rebuild_projections(self) -> int:
        """Empty and refill the projections from the trail; returns the events read."""
        async with self._pool.acquire() as connection:
            return await projections.rebuild(connection)
