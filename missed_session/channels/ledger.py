"""At most once, across worker crashes, for channels that have no idempotency of their own.

Twilio and SMTP accept the same request twice and deliver it twice. The outreach activities
are retried by Temporal, so each step's idempotency key is claimed in PostgreSQL before the
provider is called and settled after. A retry of a settled step returns its result without
calling again; a retry that finds the step still pending means a worker died between the
call and its record. It might have rung the client, so it is not repeated: the step fails
with a reason the audit keeps, and the ladder moves on. A provider that answers with an
error releases the claim, so ordinary retries still work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from missed_session.channels.base import Channel, ChannelRejectedError, EmailChannel
from missed_session.domain.models import CallResult

UNCERTAIN = (
    "a previous try of this step may have reached the person (the worker stopped "
    "mid-delivery); not sent again"
)


class DeliveryUncertainError(ChannelRejectedError):
    """A step may already have been delivered; repeating it could reach the person twice."""


class DeliveryLedger:
    """The `channel_deliveries` table: claim, settle, release."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def once(self, key: str, deliver: Callable[[], Awaitable[str]]) -> str:
        """Run `deliver` at most once for `key`, returning its (recorded) result."""
        claimed = await self._pool.fetchval(
            "INSERT INTO channel_deliveries (idempotency_key, state) VALUES ($1, 'pending')"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1",
            key,
        )
        if not claimed:
            row = await self._pool.fetchrow(
                "SELECT state, result FROM channel_deliveries WHERE idempotency_key = $1", key
            )
            if row is not None and row["state"] == "done":
                result: str = row["result"]
                return result
            raise DeliveryUncertainError(UNCERTAIN)
        try:
            result = await deliver()
        except BaseException:
            await self._pool.execute(
                "DELETE FROM channel_deliveries WHERE idempotency_key = $1"
                " AND state = 'pending'",
                key,
            )
            raise
        await self._pool.execute(
            "UPDATE channel_deliveries SET state = 'done', result = $2, settled_at = now()"
            " WHERE idempotency_key = $1",
            key, result,
        )
        return result


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
