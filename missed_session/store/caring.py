"""What caring contacts ask PostgreSQL: which series are running for a client.

(Whether the client came back is attendance: `store.attendance.AttendanceStore`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

RUNNING_SERIES = (
    "SELECT started.session_id FROM audit_events started"
    " WHERE started.event_type = 'caring_started'"
    "   AND started.data->>'client_ref' = ANY($1::text[])"
    "   AND NOT EXISTS (SELECT 1 FROM audit_events ended"
    "                   WHERE ended.session_id = started.session_id"
    "                     AND ended.event_type = 'caring_ended')"
    " ORDER BY started.session_id"
)


async def running_series(pool: asyncpg.Pool, client_refs: Sequence[str]) -> list[str]:
    """The series of these clients that have started and not ended (by their trails)."""
    if not client_refs:
        return []
    rows = await pool.fetch(RUNNING_SERIES, list(client_refs))
    return [row["session_id"] for row in rows]
