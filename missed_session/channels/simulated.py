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
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

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
    RINGS_OUT = "rings_out"
    """Nobody answers and nothing can be left (busy, no voicemail box): a voicemail or a
    message to this number is not delivered."""


UNDELIVERED = "not_delivered"
"""The log's result for a voicemail or message the number could not take."""


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
        """Record the voicemail; a scripted call-back becomes due after it.

        A repeated key returns the first try's outcome.
        """
        behaviour, callback_seconds = await self._behaviour(to)
        outcome = UNDELIVERED if behaviour is Behaviour.RINGS_OUT else "left"
        async with self._pool.acquire() as connection, connection.transaction():
            recorded = await _log(connection, key, session_id, "voicemail", to, text, outcome)
            if behaviour is Behaviour.CALLS_BACK:
                await connection.execute(
                    "INSERT INTO sim_phone_callbacks (session_id, due_at)"
                    " VALUES ($1, now() + make_interval(secs => $2))"
                    " ON CONFLICT (session_id) DO NOTHING",
                    session_id, float(callback_seconds or 0),
                )
        return CallResult.NO_ANSWER if recorded == UNDELIVERED else CallResult.ANSWERED

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Record a message (used for the emergency contact).

        A repeated key returns the first try's outcome.
        """
        behaviour, _ = await self._behaviour(to)
        if behaviour is Behaviour.INVALID_NUMBER:
            await self._log(key, session_id, "message", to, text, "invalid_number")
            raise InvalidContactError("the emergency contact's number is not in service")
        outcome = UNDELIVERED if behaviour is Behaviour.RINGS_OUT else "delivered"
        recorded = await self._log(key, session_id, "message", to, text, outcome)
        return CallResult.NO_ANSWER if recorded == UNDELIVERED else CallResult.ANSWERED

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
    """Delivers the simulated clients' call-backs when they fall due.

    It runs inside the worker for as long as the worker does, so nothing it meets may stop
    it: PostgreSQL or Temporal being unreachable is logged (the error's type only, never a
    session's data) and the poll is retried with backoff, doubling up to
    `max_backoff_seconds`. A call-back is marked delivered only once it was delivered, or
    once Temporal said it never can be (the session is over, or refused it): one whose
    delivery failed for an outage is tried again on a later poll.
    """

    def __init__(self, pool: asyncpg.Pool, deliver: Deliver, *, poll_seconds: float = 0.5,
                 max_backoff_seconds: float = 30.0) -> None:
        self._pool = pool
        self._deliver = deliver
        self._poll_seconds = poll_seconds
        self._max_backoff = max_backoff_seconds

    async def run(self) -> None:
        """Poll until cancelled, surviving every error."""
        delay = self._poll_seconds
        while True:
            try:
                await self.deliver_due()
            except Exception as error:  # an outage must not end the loop
                delay = min(delay * 2, self._max_backoff)
                log.warning("callback_dispatch_failed", error_type=type(error).__name__,
                            retry_in_seconds=delay)
                await asyncio.sleep(delay)
                continue
            if delay != self._poll_seconds:
                log.info("callback_dispatch_recovered")
                delay = self._poll_seconds
            await asyncio.sleep(self._poll_seconds)

    async def deliver_due(self) -> int:
        """Deliver every call-back that is due; returns how many were settled.

        An outage (PostgreSQL, Temporal) propagates after what was settled so far.
        """
        rows = await self._pool.fetch(
            "SELECT session_id FROM sim_phone_callbacks"
            " WHERE delivered_at IS NULL AND due_at <= now() ORDER BY due_at"
        )
        for row in rows:
            try:
                await self._deliver(row["session_id"])
            except Exception as error:
                if not _never_deliverable(error):
                    raise
                log.warning("callback_undeliverable", session_id=row["session_id"],
                            error_type=type(error).__name__)
            await self._pool.execute(
                "UPDATE sim_phone_callbacks SET delivered_at = now() WHERE session_id = $1",
                row["session_id"],
            )
        return len(rows)


def _never_deliverable(error: Exception) -> bool:
    """Temporal's answer that retrying cannot help: no such session, or it refused."""
    if isinstance(error, WorkflowUpdateFailedError):
        return True
    return isinstance(error, RPCError) and error.status in NEVER_DELIVERABLE


NEVER_DELIVERABLE = frozenset({RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT})
"""A session that is over (or never existed) cannot be told about a call-back."""
