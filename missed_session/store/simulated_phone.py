"""The simulated phone's tables: its scripts, its log, the call-backs it owes.

`sim_phone_scripts`, `sim_phone_log` and `sim_phone_callbacks`; SQL only: how the phone
behaves and when a call-back is delivered is `missed_session.channels.simulated`'s.
Behaviours are their names here (the channel's `Behaviour` values): the store sits below the
channels and does not import them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from missed_session.store.connection import Connection


@dataclass(frozen=True)
class Script:
    """How a scripted number behaves."""

    behaviour: str
    """A `Behaviour` value."""
    callback_seconds: int | None
    """`calls_back`: how long after a voicemail the client calls back."""


@dataclass(frozen=True)
class Placed:
    """One thing the phone placed (a call, voicemail, message, text or email)."""

    key: str
    session_id: str
    kind: str
    """`call`, `voicemail`, `message`, `text` or `email`."""
    to: str
    body: str | None
    result: str
    """What happened (a later try with the same key gets the first try's back)."""


class SimulatedPhoneStore:
    """Reads and writes the simulated phone's rows."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def script(self, phone: str, behaviour: str, callback_seconds: int | None) -> None:
        """Set how `phone` behaves from now on."""
        await self._pool.execute(
            "INSERT INTO sim_phone_scripts (phone, behaviour, callback_seconds)"
            " VALUES ($1, $2, $3) ON CONFLICT (phone) DO UPDATE"
            " SET behaviour = EXCLUDED.behaviour, callback_seconds = EXCLUDED.callback_seconds",
            phone, behaviour, callback_seconds,
        )

    async def script_of(self, phone: str) -> Script | None:
        """How `phone` was scripted, if it was."""
        row = await self._pool.fetchrow(
            "SELECT behaviour, callback_seconds FROM sim_phone_scripts WHERE phone = $1", phone
        )
        return None if row is None else Script(row["behaviour"], row["callback_seconds"])

    async def log(self, placed: Placed) -> str:
        """Record once per key and return the result recorded first."""
        async with self._pool.acquire() as connection:
            return await _log(connection, placed)

    async def log_voicemail(self, placed: Placed,
                            callback_seconds: float | None) -> tuple[str, datetime | None]:
        """Record a voicemail and, with `callback_seconds`, the call-back it makes due.

        One transaction, so that a worker that restarts still owes the call-back (one per
        session). Returns the result recorded first and when the call-back is due, if one
        is owed and not yet delivered.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            recorded = await _log(connection, placed)
            if callback_seconds is None:
                return recorded, None
            await connection.execute(
                "INSERT INTO sim_phone_callbacks (session_id, due_at)"
                " VALUES ($1, now() + make_interval(secs => $2))"
                " ON CONFLICT (session_id) DO NOTHING",
                placed.session_id, callback_seconds,
            )
            due_at: datetime | None = await connection.fetchval(
                "SELECT due_at FROM sim_phone_callbacks"
                " WHERE session_id = $1 AND delivered_at IS NULL",
                placed.session_id,
            )
            return recorded, due_at

    async def placed(self, session_id: str) -> list[asyncpg.Record]:
        """Everything placed for a session, oldest first."""
        return await self._pool.fetch(
            "SELECT idempotency_key, kind, to_number, body, result FROM sim_phone_log"
            " WHERE session_id = $1 ORDER BY placed_at, idempotency_key",
            session_id,
        )

    async def owed(self) -> list[tuple[str, datetime]]:
        """Call-backs not yet delivered: (session id, when due)."""
        rows = await self._pool.fetch(
            "SELECT session_id, due_at FROM sim_phone_callbacks WHERE delivered_at IS NULL"
        )
        return [(row["session_id"], row["due_at"]) for row in rows]

    async def due(self) -> list[str]:
        """Sessions whose call-back is due now and not delivered, earliest first."""
        rows = await self._pool.fetch(
            "SELECT session_id FROM sim_phone_callbacks"
            " WHERE delivered_at IS NULL AND due_at <= now() ORDER BY due_at"
        )
        return [row["session_id"] for row in rows]

    async def delivered(self, session_id: str) -> None:
        """Mark the session's call-back delivered."""
        await self._pool.execute(
            "UPDATE sim_phone_callbacks SET delivered_at = now()"
            " WHERE session_id = $1 AND delivered_at IS NULL",
            session_id,
        )


async def _log(connection: Connection, placed: Placed) -> str:
    recorded: str = await connection.fetchval(
        "WITH placed AS ("
        " INSERT INTO sim_phone_log (idempotency_key, session_id, kind, to_number, body, result)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING"
        " RETURNING result)"
        " SELECT result FROM placed UNION ALL"
        " SELECT result FROM sim_phone_log WHERE idempotency_key = $1 LIMIT 1",
        placed.key, placed.session_id, placed.kind, placed.to, placed.body, placed.result,
    )
    return recorded
