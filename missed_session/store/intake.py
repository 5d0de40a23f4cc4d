"""PostgreSQL for intake: answers by delivery key, per-session ordering, and id aliases.

The primary key (source, message_key) is the duplicate check: the first answer stored
wins, and a repeated delivery reads it back, across restarts and across listeners.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class StoredAnswer:
    """What a message was answered the first time."""

    status: int
    """HTTP status (or 200 for an HL7 ACK)."""
    answer: str
    """The body sent: an ACK, a JSON document."""
    outcome: str
    """The outcome's kind, for the operator."""
    final: bool = True
    """Replayed to a repeated delivery; False: the message is processed again."""


@dataclass(frozen=True)
class KnownSession:
    """What intake has applied to a session so far."""

    start: datetime | None
    last_sent_at: datetime | None
    cancelled_unbooked: bool


class IntakeStore:
    """Reads and writes the intake tables through the service's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def answer(self, source: str, key: str) -> StoredAnswer | None:
        """The first answer to this delivery, if it was answered before."""
        row = await self._pool.fetchrow(
            "SELECT status, answer, outcome, final FROM intake_messages"
            " WHERE source = $1 AND message_key = $2", source, key)
        if row is None:
            return None
        return StoredAnswer(row["status"], row["answer"], row["outcome"], row["final"])

    async def remember(self, *, source: str, key: str, session_id: str | None, command: str,
                       outcome: str, sent_at: datetime | None, status: int,
                       answer: str, final: bool = True, feed: str | None = None
                       ) -> StoredAnswer:
        """Store the answer unless a final one is stored already; returns the one that holds.

        A stored answer that was not final is replaced (and its delivery counted again).
        """
        row = await self._pool.fetchrow(
            "INSERT INTO intake_messages AS m (source, message_key, session_id, command,"
            " outcome, sent_at, status, answer, final, feed)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (source, message_key) DO UPDATE SET"
            " session_id = EXCLUDED.session_id, command = EXCLUDED.command,"
            " outcome = EXCLUDED.outcome, sent_at = EXCLUDED.sent_at,"
            " status = EXCLUDED.status, answer = EXCLUDED.answer, final = EXCLUDED.final,"
            " feed = EXCLUDED.feed, attempts = m.attempts + 1, received_at = now()"
            " WHERE NOT m.final RETURNING status",
            source, key, session_id, command, outcome, sent_at, status, answer, final, feed)
        if row is not None:
            return StoredAnswer(status, answer, outcome, final)
        first = await self.answer(source, key)
        assert first is not None  # the conflicting row exists: rows are never deleted here
        return first

    async def last_sent(self, session_id: str, feed: str) -> datetime | None:
        """The newest sender time applied to the session from this feed, if any.

        Never later than our receipt of that message.
        """
        value: datetime | None = await self._pool.fetchval(
            "SELECT last_sent_at FROM intake_feed_order WHERE session_id = $1 AND feed = $2",
            session_id, feed)
        return value

    async def sent(self, session_id: str, feed: str, sent_at: datetime) -> None:
        """Note the sender time of a message applied from this feed (the newest one wins)."""
        await self._pool.execute(
            "INSERT INTO intake_feed_order AS o (session_id, feed, last_sent_at)"
            " VALUES ($1, $2, $3) ON CONFLICT (session_id, feed) DO UPDATE SET"
            " last_sent_at = GREATEST(o.last_sent_at, EXCLUDED.last_sent_at),"
            " received_at = now()", session_id, feed, sent_at)

    async def session(self, session_id: str) -> KnownSession | None:
        """What intake applied to the session, if anything."""
        row = await self._pool.fetchrow(
            "SELECT start, last_sent_at, cancelled_unbooked FROM intake_sessions"
            " WHERE session_id = $1", session_id)
        if row is None:
            return None
        return KnownSession(row["start"], row["last_sent_at"], row["cancelled_unbooked"])

    async def applied(self, session_id: str, *, sent_at: datetime | None,
                      start: datetime | None = None,
                      cancelled_unbooked: bool = False) -> None:
        """Note an applied message: the newest sender time, the start, a tombstone."""
        await self._pool.execute(
            "INSERT INTO intake_sessions AS s (session_id, start, last_sent_at,"
            " cancelled_unbooked) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (session_id) DO UPDATE SET"
            " start = COALESCE(EXCLUDED.start, s.start),"
            " last_sent_at = GREATEST(s.last_sent_at, EXCLUDED.last_sent_at),"
            " cancelled_unbooked = s.cancelled_unbooked OR EXCLUDED.cancelled_unbooked,"
            " updated_at = now()",
            session_id, start, sent_at, cancelled_unbooked)

    async def resolve(self, source: str, ids: tuple[str, ...]) -> str:
        """The session for a message naming `ids` (earlier ids first, its own last).

        The first id already mapped decides; otherwise the earliest id becomes the
        session's. Every id is then mapped to it, so later messages under any of them
        reach the same session.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT external_id, session_id FROM intake_aliases"
                " WHERE source = $1 AND external_id = ANY($2::text[])", source, list(ids))
            known = {row["external_id"]: row["session_id"] for row in rows}
            session = next((known[i] for i in ids if i in known), ids[0])
            await connection.executemany(
                "INSERT INTO intake_aliases (source, external_id, session_id)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [(source, external, session) for external in ids])
        return session
