"""The delivery ledger's tables: `channel_deliveries` (claims) and `provider_reports`.

SQL only; what a claim means (at most once across worker crashes, when a claim is released
or kept uncertain, how a step resumes from the provider's id) is the ledger's, in
`missed_session.channels.ledger`. Every statement is one round trip, parameterised.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Claim:
    """Where a claimed step stands."""

    state: str
    """`pending` (claimed, not settled) or `done`."""
    result: str | None
    """The recorded result (done), or why it stays pending (uncertain)."""
    provider_ref: str | None
    """The provider's id for what it created, once it accepted the request."""


@dataclass(frozen=True)
class ProviderReport:
    """What the provider's status callback said about a call it made."""

    status: str
    """The call's status as the provider names it (`completed`, `busy`, ...)."""
    answered_by: str | None
    """The provider's answering-machine verdict (`human`, `machine_end_beep`, ...), if any."""


class DeliveryStore:
    """Claims on delivery steps, by idempotency key, and the provider's reports."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def claim(self, key: str) -> bool:
        """Claim the step `key` (pending); False when it was claimed before."""
        claimed = await self._pool.fetchval(
            "INSERT INTO channel_deliveries (idempotency_key, state)"
            " VALUES ($1, 'pending') ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1",
            key,
        )
        return bool(claimed)

    async def claim_of(self, key: str) -> Claim | None:
        """The claim on `key`, if there is one (it may have been released meanwhile)."""
        row = await self._pool.fetchrow(
            "SELECT state, result, provider_ref FROM channel_deliveries"
            " WHERE idempotency_key = $1", key,
        )
        return None if row is None else Claim(row["state"], row["result"], row["provider_ref"])

    async def release(self, key: str) -> None:
        """Drop a pending claim: nothing was delivered, a retry may send."""
        await self._pool.execute(
            "DELETE FROM channel_deliveries WHERE idempotency_key = $1 AND state = 'pending'",
            key,
        )

    async def keep_uncertain(self, key: str, note: str) -> None:
        """Keep a pending claim pending for good, with why (`note`)."""
        await self._pool.execute(
            "UPDATE channel_deliveries SET result = $2, settled_at = now()"
            " WHERE idempotency_key = $1 AND state = 'pending'", key, note,
        )

    async def settle(self, key: str, result: str) -> None:
        """Record the step delivered, with the provider's result."""
        await self._pool.execute(
            "UPDATE channel_deliveries SET state = 'done', result = $2, settled_at = now()"
            " WHERE idempotency_key = $1",
            key, result,
        )

    async def accepted(self, key: str, provider_ref: str) -> None:
        """Keep the provider's id on the pending claim `key`."""
        await self._pool.execute(
            "UPDATE channel_deliveries SET provider_ref = $2"
            " WHERE idempotency_key = $1 AND state = 'pending'", key, provider_ref,
        )

    async def reported(self, provider_ref: str) -> ProviderReport | None:
        """The provider's status callback for `provider_ref`, or None."""
        row = await self._pool.fetchrow(
            "SELECT status, answered_by FROM provider_reports WHERE provider_ref = $1",
            provider_ref,
        )
        return None if row is None else ProviderReport(row["status"], row["answered_by"])

    async def report(self, provider_ref: str, report: ProviderReport) -> bool:
        """Keep a call's final status; False if one was kept already (the first stands)."""
        recorded = await self._pool.fetchval(
            "INSERT INTO provider_reports (provider_ref, status, answered_by)"
            " VALUES ($1, $2, $3) ON CONFLICT (provider_ref) DO NOTHING RETURNING 1",
            provider_ref, report.status, report.answered_by,
        )
        return bool(recorded)
