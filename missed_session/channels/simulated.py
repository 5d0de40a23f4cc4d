"""A local simulated phone, texts and email: the default channel for demos and tests.

It records every call, voicemail, text, email and message in PostgreSQL, as a real channel
would record what it sent, and behaves per number (or address) as a demo or test scripts
it: the client answers, does not answer, the number is invalid, or the client calls back
some time after a voicemail. Call-backs are delivered by :class:`CallbackDispatcher`, the
way a practice's phone system would tell the service about an inbound call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum

import asyncpg
import structlog

from missed_session.channels.base import InvalidContactError
from missed_session.domain.models import CallResult
from missed_session.store.database import Connection

log = structlog.get_logger(__name__)


class Behaviour(StrEnum):
    """How a simulated number behaves."""

    ANSWERS = "answers"
    NO_ANSWER = "no_answer"
    INVALID_NUMBER = "invalid_number"
    CALLS_BACK = "calls_back"


class SimulatedPhone:
    """A phone channel that dials nobody and remembers everything."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def script(self, phone: str, behaviour: Behaviour,
                     callback_seconds: int | None = None) -> None:
        """Decide how `phone` behaves from now on (unscripted numbers do not answer)."""
        if (behaviour is Behaviour.CALLS_BACK) != (callback_seconds is not None):
            msg = "callback_seconds is required for calls_back and only for it"
            raise ValueError(msg)
        await self._pool.execute(
            "INSERT INTO sim_phone_scripts (phone, behaviour, callback_seconds)"
            " VALUES ($1, $2, $3) ON CONFLICT (phone) DO UPDATE"
            " SET behaviour = EXCLUDED.behaviour, callback_seconds = EXCLUDED.callback_seconds",
            phone, behaviour.value, callback_seconds,
        )

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring the number; a repeated key returns the first call's result."""
        behaviour, _ = await self._behaviour(to)
        if behaviour is Behaviour.INVALID_NUMBER:
            await self._log(key, session_id, "call", to, None, "invalid_number")
            raise InvalidContactError("the client's number is not in service")
        result = CallResult.ANSWERED if behaviour is Behaviour.ANSWERS else CallResult.NO_ANSWER
        return CallResult(await self._log(key, session_id, "call", to, None, result.value))

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Record the voicemail (always recorded); a scripted call-back becomes due after it."""
        behaviour, callback_seconds = await self._behaviour(to)
        async with self._pool.acquire() as connection, connection.transaction():
            await _log(connection, key, session_id, "voicemail", to, text, "left")
            if behaviour is Behaviour.CALLS_BACK:
                await connection.execute(
                    "INSERT INTO sim_phone_callbacks (session_id, due_at)"
                    " VALUES ($1, now() + make_interval(secs => $2))"
                    " ON CONFLICT (session_id) DO NOTHING",
                    session_id, float(callback_seconds or 0),
                )
        return CallResult.ANSWERED

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Record a delivered message (used for the emergency contact)."""
        behaviour, _ = await self._behaviour(to)
        if behaviour is Behaviour.INVALID_NUMBER:
            await self._log(key, session_id, "message", to, text, "invalid_number")
            raise InvalidContactError("the emergency contact's number is not in service")
        await self._log(key, session_id, "message", to, text, "delivered")
        return CallResult.ANSWERED

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Record a text; an invalid number is refused like a call to it."""
        await self._send(key, session_id, "text", to, text)

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Record an email; an address scripted `invalid_number` bounces."""
        await self._send(key, session_id, "email", to, f"{subject}\n\n{body}")

    async def _send(self, key: str, session_id: str, kind: str, to: str, body: str) -> None:
        behaviour, _ = await self._behaviour(to)
        if behaviour is Behaviour.INVALID_NUMBER:
            await self._log(key, session_id, kind, to, body, "invalid_number")
            raise InvalidContactError(f"the client's {kind} address does not reach anyone")
        await self._log(key, session_id, kind, to, body, "sent")

    async def placed(self, session_id: str) -> list[asyncpg.Record]:
        """Everything placed for a session, oldest first (for tests and the demo)."""
        return await self._pool.fetch(
            "SELECT idempotency_key, kind, to_number, body, result FROM sim_phone_log"
            " WHERE session_id = $1 ORDER BY placed_at, idempotency_key",
            session_id,
        )

    async def _behaviour(self, phone: str) -> tuple[Behaviour, int | None]:
        row = await self._pool.fetchrow(
            "SELECT behaviour, callback_seconds FROM sim_phone_scripts WHERE phone = $1", phone
        )
        if row is None:
            return Behaviour.NO_ANSWER, None
        return Behaviour(row["behaviour"]), row["callback_seconds"]

    async def _log(self, key: str, session_id: str, kind: str, to: str, body: str | None,
                   result: str) -> str:
        async with self._pool.acquire() as connection:
            return await _log(connection, key, session_id, kind, to, body, result)


async def _log(connection: Connection, key: str, session_id: str, kind: str, to: str,
               body: str | None, result: str) -> str:
    """Record once per key and return the result recorded first."""
    recorded: str = await connection.fetchval(
        "WITH placed AS ("
        " INSERT INTO sim_phone_log (idempotency_key, session_id, kind, to_number, body, result)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING"
        " RETURNING result)"
        " SELECT result FROM placed UNION ALL"
        " SELECT result FROM sim_phone_log WHERE idempotency_key = $1 LIMIT 1",
        key, session_id, kind, to, body, result,
    )
    return recorded


Deliver = Callable[[str], Awaitable[None]]
"""Tells the session workflow that the client called back (by session id)."""


class CallbackDispatcher:
    """Delivers the simulated clients' call-backs when they fall due."""

    def __init__(self, pool: asyncpg.Pool, deliver: Deliver, *, poll_seconds: float = 0.5):
        self._pool = pool
        self._deliver = deliver
        self._poll_seconds = poll_seconds

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.deliver_due()
            await asyncio.sleep(self._poll_seconds)

    async def deliver_due(self) -> int:
        """Deliver every call-back that is due; returns how many."""
        rows = await self._pool.fetch(
            "SELECT session_id FROM sim_phone_callbacks"
            " WHERE delivered_at IS NULL AND due_at <= now() ORDER BY due_at"
        )
        for row in rows:
            try:
                await self._deliver(row["session_id"])
            except Exception as error:
                log.warning("callback_undeliverable", session_id=row["session_id"],
                            error_type=type(error).__name__)
            await self._pool.execute(
                "UPDATE sim_phone_callbacks SET delivered_at = now() WHERE session_id = $1",
                row["session_id"],
            )
        return len(rows)
