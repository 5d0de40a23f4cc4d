"""PostgreSQL for kept texts: inbound texts waiting to reach their sessions.

A row per provider message id (the primary key is the deduplication: a redelivered id
inserts nothing) and a row per session it is for. The sender's number and the text are
stored only sealed (`missed_session.application.kept_texts` seals them) and erased when
the text settles. Every statement is parameterised; times are the database's clock.

Several API processes may share the table: a text is claimed for a short lease before it
is tried (`FOR UPDATE SKIP LOCKED`), and the deliverer renews the lease while it works on
the text (`renew`), so two live deliverers never try it at once, and a deliverer that dies
mid-try (a SIGKILLed API) leaves it to the next one within `CLAIM_LEASE` seconds. Were a
renewal late, a second try is harmless: it carries the same update id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg


class InboundProvider(StrEnum):
    """Which provider carried the text (stored in the `channel` column: a stored name, kept)."""

    TWILIO = "twilio"
    WEBHOOK = "webhook"


class Settlement(StrEnum):
    """What became of a kept text (or of it in one session)."""

    PENDING = "pending"
    """Not yet delivered: the deliverer tries again."""
    DELIVERED = "delivered"
    """The session accepted the update."""
    REFUSED = "refused"
    """The session's validator refused it (the reason is kept)."""
    SESSION_GONE = "session_gone"
    """The session closed (or never existed) before the text reached it."""
    NO_OPEN_SESSION = "no_open_session"
    """Looked up later (Temporal was unreachable when it came): no open session had the number."""
    UNREADABLE = "unreadable"
    """Its seal no longer opens (its encryption key was removed): it cannot be delivered."""
    LATE_RESPONSE = "late_response"
    """Its session had moved on (closed, or refused it): it went to the session's therapist
    as a late client response, a notice (its key is the reason)."""


@dataclass(frozen=True)
class KeptText:
    """A kept text as the deliverer claims it."""

    message_id: str
    """The provider's message id (`text-<id>` is the update id)."""
    channel: InboundProvider
    kind: str
    """`opt_out` or `response` (the inbound classification)."""
    sealed: bytes
    """The sender and the text, sealed."""
    sessions_known: bool
    """Whether its sessions were looked up when it came (False: Temporal was unreachable)."""
    attempts: int
    """Tries so far by the deliverer."""
    received_at: datetime | None = None
    """When it was kept (a late response says whether the session escalated after it)."""


@dataclass(frozen=True)
class KeptTextRow:
    """One kept text for operators: no number, no text."""

    message_id: str
    channel: str
    kind: str
    state: str
    outcome: str | None
    attempts: int
    last_error: str | None
    received_at: datetime
    next_attempt_at: datetime
    sessions: dict[str, str]
    """Session id -> its delivery outcome."""


CLAIM_LEASE = timedelta(seconds=15)
"""How long a claimed text is left to its deliverer before another may try it; the
deliverer renews it every `RENEW_EVERY` while it works, so only a dead one loses it."""
RENEW_EVERY = timedelta(seconds=5)
"""How often a working deliverer renews its claim."""


class KeptTextStore:
    """The kept texts and their deliveries."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def keep(self, *, message_id: str, channel: InboundProvider, kind: str, sealed: bytes,
                   sessions: dict[str, tuple[Settlement, str | None]] | None) -> bool:
        """Keep a text; False when its message id is already kept (nothing changes then).

        `sessions` maps each open session to what the first try did there (pending for
        those it could not reach); None when the sessions could not be looked up.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await connection.fetchval(
                "INSERT INTO kept_texts (message_id, channel, kind, sealed, sessions_known)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING"
                " RETURNING true",
                message_id, channel.value, kind, sealed, sessions is not None,
            )
            if not inserted:
                return False
            for session_id, (outcome, reason) in (sessions or {}).items():
                await connection.execute(
                    "INSERT INTO kept_text_deliveries (message_id, session_id, outcome,"
                    " reason, settled_at) VALUES ($1, $2, $3, $4,"
                    " CASE WHEN $3 = 'pending' THEN NULL ELSE now() END)",
                    message_id, session_id, outcome.value, reason,
                )
        return True

    async def is_kept(self, message_id: str) -> bool:
        """Whether a text with this provider id is kept (pending or settled)."""
        found = await self._pool.fetchval(
            "SELECT true FROM kept_texts WHERE message_id = $1", message_id)
        return bool(found)

    async def claim_due(self) -> KeptText | None:
        """The oldest pending text whose next try is due, leased to this caller."""
        row = await self._pool.fetchrow(
            "UPDATE kept_texts SET next_attempt_at = now() + $1::interval"
            " WHERE message_id = (SELECT message_id FROM kept_texts"
            "   WHERE state = 'pending' AND next_attempt_at <= now()"
            "   ORDER BY received_at, message_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " RETURNING message_id, channel, kind, sealed, sessions_known, attempts,"
            " received_at",
            CLAIM_LEASE,
        )
        if row is None:
            return None
        return KeptText(row["message_id"], InboundProvider(row["channel"]), row["kind"],
                        bytes(row["sealed"]), row["sessions_known"], row["attempts"],
                        row["received_at"])

    async def renew(self, message_id: str) -> bool:
        """Extend this deliverer's claim on a pending text by `CLAIM_LEASE`; False if settled."""
        found = await self._pool.fetchval(
            "UPDATE kept_texts SET next_attempt_at = now() + $2::interval"
            " WHERE message_id = $1 AND state = 'pending' RETURNING true",
            message_id, CLAIM_LEASE)
        return bool(found)

    async def seconds_to_next(self) -> float | None:
        """Seconds until the next pending text is due (0 if one is); None if none pends."""
        # Not greatest(0, ...) in SQL: PostgreSQL's greatest ignores NULL, so "none pends"
        # came back as 0 ("one is due") and the deliverer never slept (issue 22).
        seconds = await self._pool.fetchval(
            "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8"
            " FROM kept_texts WHERE state = 'pending'")
        return None if seconds is None else max(0.0, float(seconds))

    async def add_sessions(self, message_id: str, session_ids: list[str]) -> None:
        """The open sessions found for a text whose sessions were not known when it came."""
        async with self._pool.acquire() as connection, connection.transaction():
            for session_id in session_ids:
                await connection.execute(
                    "INSERT INTO kept_text_deliveries (message_id, session_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING", message_id, session_id)
            await connection.execute(
                "UPDATE kept_texts SET sessions_known = true WHERE message_id = $1", message_id)

    async def pending_sessions(self, message_id: str) -> list[str]:
        """The sessions the text has not yet reached (nor been refused or lost by)."""
        rows = await self._pool.fetch(
            "SELECT session_id FROM kept_text_deliveries WHERE message_id = $1"
            " AND outcome = 'pending' ORDER BY session_id", message_id)
        return [row["session_id"] for row in rows]

    async def settle_session(self, message_id: str, session_id: str, outcome: Settlement,
                             reason: str | None) -> None:
        """What the text did in one session (delivered, refused or the session gone)."""
        await self._pool.execute(
            "UPDATE kept_text_deliveries SET outcome = $3, reason = $4, settled_at = now()"
            " WHERE message_id = $1 AND session_id = $2 AND outcome = 'pending'",
            message_id, session_id, outcome.value, reason)

    async def postpone(self, message_id: str, error_type: str, delay: timedelta) -> None:
        """Try again after `delay`; `error_type` names what stood in the way (never a value)."""
        await self._pool.execute(
            "UPDATE kept_texts SET attempts = attempts + 1, last_error = $2,"
            " next_attempt_at = now() + $3::interval WHERE message_id = $1 AND state = 'pending'",
            message_id, error_type, delay)

    async def settle(self, message_id: str, outcome: Settlement | None = None) -> Settlement:
        """Close a text, erasing its seal; the outcome is its sessions' unless given.

        Delivered when any session accepted it, else a late response when any session's
        therapist was given it, else refused when any refused it, else the session is gone;
        no sessions at all is `no_open_session`.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            if outcome is None:
                outcome = Settlement(await connection.fetchval(
                    "SELECT CASE WHEN bool_or(outcome = 'delivered') THEN 'delivered'"
                    " WHEN bool_or(outcome = 'late_response') THEN 'late_response'"
                    " WHEN bool_or(outcome = 'refused') THEN 'refused'"
                    " WHEN count(*) > 0 THEN 'session_gone' ELSE 'no_open_session' END"
                    " FROM kept_text_deliveries WHERE message_id = $1", message_id))
            await connection.execute(
                "UPDATE kept_texts SET state = 'settled', outcome = $2, sealed = NULL,"
                " attempts = attempts + 1, settled_at = now()"
                " WHERE message_id = $1 AND state = 'pending'", message_id, outcome.value)
        return outcome

    async def retry_now(self) -> int:
        """Make every pending text due now (an operator's nudge after an outage); how many."""
        result = await self._pool.execute(
            "UPDATE kept_texts SET next_attempt_at = now() WHERE state = 'pending'")
        return int(result.split()[-1])

    async def counts(self) -> dict[str, int]:
        """Kept texts by outcome (`pending` for those still waiting)."""
        rows = await self._pool.fetch(
            "SELECT coalesce(outcome, 'pending') AS outcome, count(*) AS n FROM kept_texts"
            " GROUP BY 1")
        counts = {outcome.value: 0 for outcome in Settlement}
        counts.update({row["outcome"]: row["n"] for row in rows})
        return counts

    async def rows(self, *, pending_only: bool, limit: int = 100) -> list[KeptTextRow]:
        """Kept texts, oldest first, with each session's outcome (no number, no text)."""
        rows = await self._pool.fetch(
            "SELECT t.message_id, t.channel, t.kind, t.state, t.outcome, t.attempts,"
            " t.last_error, t.received_at, t.next_attempt_at,"
            " coalesce(jsonb_object_agg(d.session_id, d.outcome)"
            "   FILTER (WHERE d.session_id IS NOT NULL), '{}'::jsonb)::text AS sessions"
            " FROM kept_texts t LEFT JOIN kept_text_deliveries d USING (message_id)"
            " WHERE NOT $1 OR t.state = 'pending'"
            " GROUP BY t.message_id ORDER BY t.received_at, t.message_id LIMIT $2",
            pending_only, limit)
        return [KeptTextRow(row["message_id"], row["channel"], row["kind"], row["state"],
                            row["outcome"], row["attempts"], row["last_error"],
                            row["received_at"], row["next_attempt_at"],
                            json.loads(row["sessions"])) for row in rows]
