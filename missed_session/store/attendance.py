"""The attendance record: one row per closed session, and the figures follow-up reads.

The row is written with the session's `closed` event, in its transaction (the append path,
`missed_session.store.append`); follow-up planning reads the client's recent rows back as
an `AttendanceSummary`; a caring-contacts series asks whether the client has come back.
Only this module writes SQL for the `attendance` table's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from missed_session.domain.follow_up import weekly_slot
from missed_session.domain.models import AttendanceSummary, AuditEvent, Outcome
from missed_session.store.connection import Connection

ATTENDANCE_WINDOW_DAYS = 90
"""How far back follow-up planning looks."""


@dataclass(frozen=True)
class Attendance:
    """The attendance row a session's `closed` event implies."""

    client_ref: str
    """Pseudonymous client id."""
    therapist_id: str
    """Whose session it was."""
    start: datetime
    """Start of the session, as finally scheduled."""
    outcome: Outcome
    """How the session closed."""


async def insert(connection: Connection, closed: AuditEvent, attendance: Attendance) -> None:
    """Write the row `closed` implies (the first written stands), in the caller's transaction."""
    await connection.execute(
        "INSERT INTO attendance (session_id, client_ref, therapist_id, start_at,"
        " outcome, closed_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (session_id) DO NOTHING",
        closed.session_id, attendance.client_ref, attendance.therapist_id, attendance.start,
        attendance.outcome.value, closed.occurred_at,
    )


class AttendanceStore:
    """Reads a client's attendance: for follow-up planning, and for a caring series."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def summary(self, *, client_ref: str, session_id: str, until: datetime,
                      current: Outcome, time_zone: str | None = None) -> AttendanceSummary:
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

    async def attended_since(self, client_ref: str, since: datetime) -> bool:
        """Whether the client attended a session that started after `since`."""
        found: bool | None = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM attendance WHERE client_ref = $1 AND start_at > $2"
            " AND outcome IN ('attended', 'attended_late'))",
            client_ref, since,
        )
        return bool(found)
