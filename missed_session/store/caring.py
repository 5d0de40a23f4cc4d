"""What a caring-contacts series asks PostgreSQL: whether the client has come back."""

from __future__ import annotations

from datetime import datetime

import asyncpg

ATTENDED_SINCE = (
    "SELECT EXISTS (SELECT 1 FROM attendance WHERE client_ref = $1 AND start_at > $2"
    " AND outcome IN ('attended', 'attended_late'))"
)


async def attended_since(pool: asyncpg.Pool, client_ref: str, since: datetime) -> bool:
    """Whether the client attended a session that started after `since`."""
    found: bool | None = await pool.fetchval(ATTENDED_SINCE, client_ref, since)
    return bool(found)
