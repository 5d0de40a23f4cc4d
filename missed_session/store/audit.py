"""The append-only audit history and the records derived from it.

The store is the only code that writes SQL for the audit trail; every statement is
parameterised. Appends are idempotent on `(session_id, sequence)`: a retried activity finds
its row already there and succeeds without writing again. Each append also links the row
into the session's hash chain (`missed_session.store.chain`): under a transaction-scoped
advisory lock per session, it reads the hash of the session's previous row and writes
`prev_hash` and `hash` with the row, in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from missed_session.domain.follow_up import weekly_slot
from missed_session.domain.models import (
    AttendanceSummary,
    AuditEvent,
    AuditEventType,
    FollowUpPlan,
    Outcome,
    TherapistNotice,
)
from missed_session.store import projections
from missed_session.store.chain import GENESIS, ChainRow, event_hash
from missed_session.store.database import Connection

ATTENDANCE_WINDOW_DAYS = 90
"""How far back follow-up planning looks."""
CHAIN_LOCK_CLASS = 7_203_312
"""First key of the per-session advisory lock held while appending (arbitrary, fixed)."""


class AuditConflictError(RuntimeError):
    """A different event already holds this place in the session's trail.

    Only a non-deterministic workflow change or a second writer could cause it, so it is
    never retried: the trail must not be papered over.
    """


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
    """Appends audit events and maintains the attendance record and therapist inbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def append(self, event: AuditEvent) -> bool:
        """Append one event; returns False when this very event was already recorded."""
        async with self._pool.acquire() as connection, connection.transaction():
            return await _append(connection, event)

    async def append_closing(self, event: AuditEvent, *, client_ref: str, therapist_id: str,
                             start: datetime, outcome: Outcome) -> bool:
        """Append the `closed` event and the attendance row together, or neither."""
        async with self._pool.acquire() as connection, connection.transaction():
            written = await _append(connection, event)
            await connection.execute(
                "INSERT INTO attendance (session_id, client_ref, therapist_id, start_at,"
                " outcome, closed_at) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (session_id) DO NOTHING",
                event.session_id, client_ref, therapist_id, start, outcome.value,
                event.occurred_at,
            )
            return written

    async def trail(self, session_id: str) -> list[AuditEvent]:
        """The session's events in order."""
        rows = await self._pool.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
            " WHERE session_id = $1 ORDER BY sequence",
            session_id,
        )
        return [_event(row) for row in rows]

    async def chain_rows(self, session_id: str) -> list[ChainRow]:
        """The session's rows with their stored hashes, for verification."""
        rows = await self._pool.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data, prev_hash, hash"
            " FROM audit_events WHERE session_id = $1 ORDER BY sequence",
            session_id,
        )
        return [_chain_row(row) for row in rows]

    async def session_ids(self, *, after: str = "", limit: int = 500) -> list[str]:
        """Sessions with an audit trail or an attendance row, in order, one page after `after`."""
        rows = await self._pool.fetch(
            "SELECT session_id FROM (SELECT session_id FROM audit_events"
            " UNION SELECT session_id FROM attendance) AS s WHERE session_id > $1"
            " ORDER BY session_id LIMIT $2",
            after, limit,
        )
        return [row["session_id"] for row in rows]

    async def closed_session_ids(self, *, after: str = "", limit: int = 100) -> list[str]:
        """Closed sessions (their attendance row exists), in order, one page after `after`."""
        rows = await self._pool.fetch(
            "SELECT session_id FROM attendance WHERE session_id > $1"
            " ORDER BY session_id LIMIT $2",
            after, limit,
        )
        return [row["session_id"] for row in rows]

    async def closed_session_count(self) -> int:
        """How many sessions have closed."""
        count: int = await self._pool.fetchval("SELECT count(*) FROM attendance")
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
            await connection.execute(
                "DELETE FROM projection_open_tasks WHERE session_id = ANY ($1::text[])",
                row["session_ids"],
            )
            await connection.execute(
                "DELETE FROM projection_attendance WHERE session_id = ANY ($1::text[])",
                row["session_ids"],
            )
        assert row is not None
        return PurgeRecord(purge_id=row["id"], sessions=row["sessions"], events=row["events"])

    async def rebuild_projections(self) -> int:
        """Empty and refill the projections from the trail; returns the events read."""
        async with self._pool.acquire() as connection:
            return await projections.rebuild(connection)

    async def add_notice(self, notice: TherapistNotice) -> bool:
        """Put an alert or task in the therapist's inbox once; False if already there."""
        status = await self._pool.execute(
            "INSERT INTO therapist_inbox (key, session_id, therapist_id, kind, priority, title)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
            notice.key, notice.session_id, notice.therapist_id, notice.kind.value,
            notice.priority.value, notice.title,
        )
        return status.endswith(" 1")

    async def attendance_summary(self, *, client_ref: str, session_id: str, until: datetime,
                                 current: Outcome,
                                 time_zone: str | None = None) -> AttendanceSummary:
        """Attendance in the window before `until`, with the current session counted.

        `until` is the current session's start; `time_zone` (the client's) decides what
        "the same weekday and hour" means for the repeated-slot pattern.
        """
        rows = await self._pool.fetch(
            "SELECT outcome, start_at FROM attendance WHERE client_ref = $1 AND session_id <> $2"
            " AND start_at >= $3 AND start_at < $4 AND outcome <> $5 ORDER BY start_at DESC",
            client_ref, session_id, until - timedelta(days=ATTENDANCE_WINDOW_DAYS), until,
            Outcome.CANCELLED.value,
        )
        outcomes = [current, *(Outcome(row["outcome"]) for row in rows)]
        consecutive = 0
        for outcome in outcomes:
            if not outcome.is_no_show:
                break
            consecutive += 1
        zone = ZoneInfo(time_zone) if time_zone else UTC
        slot = weekly_slot(until, zone)
        missed_starts = [until] if current.is_no_show else []
        missed_starts += [row["start_at"] for row in rows if Outcome(row["outcome"]).is_no_show]
        return AttendanceSummary(
            window_days=ATTENDANCE_WINDOW_DAYS,
            sessions=len(outcomes),
            no_shows=sum(outcome.is_no_show for outcome in outcomes),
            consecutive_no_shows=consecutive,
            late_arrivals=sum(outcome is Outcome.ATTENDED_LATE for outcome in outcomes),
            same_slot_no_shows=sum(weekly_slot(start, zone) == slot for start in missed_starts),
            slot=slot,
        )

    async def save_plan(self, *, session_id: str, client_ref: str,
                        plan: FollowUpPlan) -> FollowUpPlan:
        """Keep the first plan made for a session and return it.

        A retry may see a different attendance history (another session closed meanwhile);
        the plan already recorded is the one that stands.
        """
        stored: str = await self._pool.fetchval(
            "WITH saved AS ("
            " INSERT INTO follow_up_plans (session_id, client_ref, plan) VALUES ($1, $2, $3)"
            " ON CONFLICT (session_id) DO NOTHING RETURNING plan)"
            " SELECT plan FROM saved UNION ALL"
            " SELECT plan FROM follow_up_plans WHERE session_id = $1 LIMIT 1",
            session_id, client_ref, plan.model_dump_json(),
        )
        return FollowUpPlan.model_validate_json(stored)


async def _append(connection: Connection, event: AuditEvent) -> bool:
    """Insert the event linked into its chain; the caller holds a transaction."""
    data = json.dumps(event.data, sort_keys=True)
    # One appender per session at a time, so two rows can never link to the same parent.
    await connection.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", CHAIN_LOCK_CLASS, event.session_id
    )
    prev_hash: str | None = await connection.fetchval(
        "SELECT hash FROM audit_events WHERE session_id = $1 AND sequence < $2"
        " ORDER BY sequence DESC LIMIT 1",
        event.session_id, event.sequence,
    )
    prev_hash = prev_hash or GENESIS
    # Hash the data exactly as it will read back (jsonb normalises numbers, e.g. 1e+20).
    stored_data: str = await connection.fetchval("SELECT $1::jsonb::text", data)
    own_hash = event_hash(
        session_id=event.session_id, sequence=event.sequence,
        event_type=event.event_type.value, occurred_at=event.occurred_at,
        data=json.loads(stored_data), prev_hash=prev_hash,
    )
    status = await connection.execute(
        "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
        " prev_hash, hash) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)"
        " ON CONFLICT (session_id, sequence) DO NOTHING",
        event.session_id, event.sequence, event.event_type.value, event.occurred_at, data,
        prev_hash, own_hash,
    )
    if status.endswith(" 1"):
        await projections.apply(connection, event)
        return True
    row = await connection.fetchrow(
        "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
        " WHERE session_id = $1 AND sequence = $2",
        event.session_id, event.sequence,
    )
    if row is None or _event(row) != event:
        msg = (
            f"audit event {event.session_id}#{event.sequence} already recorded with "
            "different content"
        )
        raise AuditConflictError(msg)
    return False


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        session_id=row["session_id"],
        sequence=row["sequence"],
        event_type=AuditEventType(row["event_type"]),
        occurred_at=row["occurred_at"],
        data=json.loads(row["data"]),
    )


def _chain_row(row: asyncpg.Record) -> ChainRow:
    return ChainRow(
        session_id=row["session_id"],
        sequence=row["sequence"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        data=json.loads(row["data"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
