"""At most once, across worker crashes, for channels that have no idempotency of their own.

Twilio and SMTP accept the same request twice and deliver it twice. The outreach activities
are retried by Temporal, so each step's idempotency key is claimed in PostgreSQL before the
provider is called and settled after:

- delivered: the claim is settled (`done`, with the result); a retry returns that result
  without calling the provider again;
- refused before acceptance (refused connection, 4xx, 5xx, an invalid contact): nothing
  was delivered, so the claim is released and a retry may send;
- uncertain (a timeout or lost connection after the request was sent, a call placed whose
  outcome is unknown, a step cancelled mid-request): the claim stays `pending`, with the
  reason in `result`, and is never released: the person may have been reached, so no retry
  sends it again;
- a claim a retry finds `pending` (a dead worker's step, or an uncertain one): uncertain
  too, never a refusal.

Settling and releasing outlast a PostgreSQL outage: they are retried with backoff until
the database answers (the activity heartbeats meanwhile), because a provider's answer we
failed to record would otherwise read as "uncertain" on the retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from missed_session.channels.base import (
    Channel,
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    EmailChannel,
    InvalidContactError,
)
from missed_session.domain.models import CallResult

log = structlog.get_logger(__name__)

__all__ = ["STORE_UNREACHABLE", "AtMostOnce", "DeliveryLedger", "DeliveryUncertainError",
           "EmailOnce"]

STORE_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.InterfaceError,  # the connection was closed under us
)
"""What PostgreSQL being unreachable looks like to asyncpg: our outage, not the provider's."""

PENDING_FOUND = (
    "a previous try of this step may have reached the person (it was left pending: the "
    "worker stopped mid-delivery, or the provider's answer was ambiguous); not sent again"
)
UNCERTAIN_NOTE = "uncertain"
"""`result` of a claim kept pending because the provider's answer was ambiguous."""
DEFINITE_REFUSALS = (ChannelUnavailableError, ChannelRejectedError, InvalidContactError)
"""The provider answered before accepting the request: nothing was delivered."""


class DeliveryLedger:
    """The `channel_deliveries` table: claim, settle, release."""

    def __init__(self, pool: asyncpg.Pool, *, store_backoff_seconds: float = 0.5,
                 store_backoff_max_seconds: float = 10.0) -> None:
        self._pool = pool
        self._backoff = store_backoff_seconds
        self._backoff_max = store_backoff_max_seconds

    async def once(self, key: str, deliver: Callable[[], Awaitable[str]]) -> str:
        """Run `deliver` at most once for `key`, returning its (recorded) result.

        Raises :class:`DeliveryUncertainError` when an earlier try may have delivered it;
        a PostgreSQL outage while claiming propagates (nothing was sent: retry freely).
        """
        while True:
            claimed = await self._pool.fetchval(
                "INSERT INTO channel_deliveries (idempotency_key, state)"
                " VALUES ($1, 'pending') ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1",
                key,
            )
            if claimed:
                break
            row = await self._pool.fetchrow(
                "SELECT state, result FROM channel_deliveries WHERE idempotency_key = $1", key
            )
            if row is None:  # released between our insert and select: claim again
                continue
            if row["state"] == "done":
                result: str = row["result"]
                return result
            raise DeliveryUncertainError(PENDING_FOUND)
        try:
            result = await deliver()
        except DEFINITE_REFUSALS:
            await self._until_stored(
                "DELETE FROM channel_deliveries WHERE idempotency_key = $1"
                " AND state = 'pending'", key,
            )
            raise
        except DeliveryUncertainError:
            await self._until_stored(
                "UPDATE channel_deliveries SET result = $2, settled_at = now()"
                " WHERE idempotency_key = $1 AND state = 'pending'", key, UNCERTAIN_NOTE,
            )
            raise
        # Anything else (cancelled mid-request, a bug): the claim stays pending, so a
        # retry treats the step as uncertain.
        await self._until_stored(
            "UPDATE channel_deliveries SET state = 'done', result = $2, settled_at = now()"
            " WHERE idempotency_key = $1",
            key, result,
        )
        return result

    async def _until_stored(self, statement: str, *arguments: object) -> None:
        """Run one write, retrying with backoff for as long as PostgreSQL is unreachable."""
        delay = self._backoff
        while True:
            try:
                await self._pool.execute(statement, *arguments)
            except STORE_UNREACHABLE as error:
                log.warning("delivery_ledger_unreachable", error_type=type(error).__name__,
                            retry_in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
            else:
                return


class AtMostOnce:
    """Any channel, delivered at most once per idempotency key."""

    def __init__(self, inner: Channel, ledger: DeliveryLedger) -> None:
        self.inner = inner
        """The provider's channel (the worker closes it at shutdown)."""
        self._inner = inner
        self._ledger = ledger

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring once per key."""

        async def ring() -> str:
            return (await self._inner.call(key, session_id, to)).value

        return CallResult(await self._ledger.once(key, ring))

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Leave the voicemail once per key."""

        async def leave() -> str:
            return (await self._inner.leave_voicemail(key, session_id, to, text)).value

        return _call_result(await self._ledger.once(key, leave))

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Deliver the message once per key."""

        async def deliver() -> str:
            return (await self._inner.deliver_message(key, session_id, to, text)).value

        return _call_result(await self._ledger.once(key, deliver))

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Send the text once per key."""

        async def send() -> str:
            await self._inner.send_text(key, session_id, to, text)
            return "sent"

        await self._ledger.once(key, send)

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Send the email once per key."""
        await EmailOnce(self._inner, self._ledger).send_email(key, session_id, to, subject, body)


LEGACY_DELIVERED = frozenset({"left", "delivered"})
"""Results recorded before voicemails reported the call's outcome: they were delivered."""


def _call_result(recorded: str) -> CallResult:
    return CallResult.ANSWERED if recorded in LEGACY_DELIVERED else CallResult(recorded)


class EmailOnce:
    """An email-only channel (SMTP), delivered at most once per idempotency key."""

    def __init__(self, inner: EmailChannel, ledger: DeliveryLedger) -> None:
        self.inner = inner
        """The provider's channel."""
        self._ledger = ledger

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Send once per key."""

        async def send() -> str:
            await self.inner.send_email(key, session_id, to, subject, body)
            return "sent"

        await self._ledger.once(key, send)
