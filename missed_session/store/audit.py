"""The append-only audit history and the records derived from it.

The store is the only code that writes SQL for the audit trail; every statement is
parameterised. Appends are idempotent on `(session_id, sequence)`: a retried activity finds
its row already there and succeeds without writing again.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg

from missed_session.domain.models import (
    AttendanceSummary,
    AuditEvent,
    AuditEventType,
    FollowUpPlan,
    Outcome,
    TherapistNotice,
)
from missed_session.store.database import Connection

ATTENDANCE_WINDOW_DAYS = 90
"""How far back follow-up planning looks."""


class AuditConflictError(RuntimeError):
    """A different event already holds this place in the session's trail.

    Only a non-deterministic workflow change or a second writer could cause it, so it is
    never retried: the trail must not be papered over.
    """


class AuditStore:
    """Appends audit events and maintains the attendance record and therapist inbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def append(self, event: AuditEvent) -> bool:
        """Append one event; returns False when this very event was already recorded."""
        async with self._pool.acquire() as connection:
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
                                 current: Outcome) -> AttendanceSummary:
        """Attendance in the window before `until`, with the current session counted."""
        rows = await self._pool.fetch(
            "SELECT outcome FROM attendance WHERE client_ref = $1 AND session_id <> $2"
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
        return AttendanceSummary(
            window_days=ATTENDANCE_WINDOW_DAYS,
            sessions=len(outcomes),
            no_shows=sum(outcome.is_no_show for outcome in outcomes),
            consecutive_no_shows=consecutive,
            late_arrivals=sum(outcome is Outcome.ATTENDED_LATE for outcome in outcomes),
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
    data = json.dumps(event.data, sort_keys=True)
    status = await connection.execute(
        "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data)"
        " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (session_id, sequence) DO NOTHING",
        event.session_id, event.sequence, event.event_type.value, event.occurred_at, data,
    )
    if status.endswith(" 1"):
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
