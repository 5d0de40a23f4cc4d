"""PostgreSQL for the mass no-show brake: the counts it decides on, its episodes and holds.

The counts come from the attendance projection (`projection_attendance`, kept with the
trail in one statement): a session is *due* in a span when its start is in it (its grace
period has then passed for the session asking), *missed* when it has not closed as
attended or cancelled. An ordinary no-show costs one indexed range count over the window;
only a window that passes the minimum reads the baseline and touches the episode tables.

Episodes are opened and joined under one transaction-scoped advisory lock, so that two
hundred sessions deciding at once open one episode, and the session that opened it (the
one that pages) is the same on every retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from missed_session.domain.brake import Counts

NOT_MISSED = ["attended", "attended_late", "cancelled"]
"""Outcomes of sessions that were not missed (a session not yet closed counts as missed)."""
EPISODE_LOCK = 0x6272616B65
"""The advisory lock key (`brake` in hex) that orders opening and joining episodes."""
BRAKE_EVENTS = ["brake_held", "brake_released", "brake_stood_down"]

_COUNT = (
    "SELECT count(*) FILTER (WHERE coalesce(outcome, '') <> ALL($3::text[])) AS missed,"
    " count(*) AS due FROM projection_attendance WHERE start_at > $1 AND start_at <= $2"
)
_COUNT_MODALITY = (
    # The modality is the booking's, in the session's first event (`scheduled`, sequence 1).
    "SELECT count(*) FILTER (WHERE coalesce(p.outcome, '') <> ALL($3::text[])) AS missed,"
    " count(*) AS due FROM projection_attendance AS p JOIN audit_events AS s"
    " ON s.session_id = p.session_id AND s.sequence = 1"
    " WHERE p.start_at > $1 AND p.start_at <= $2 AND s.data ->> 'modality' = $4"
)


@dataclass(frozen=True)
class Hold:
    """A session held in an episode."""

    episode: str
    """The episode's id."""
    paged: bool
    """Whether this session opened the episode (and so pages the supervisor)."""
    no_shows: int
    """Missed sessions when the episode opened (what the page says)."""
    window_minutes: int
    """The window they were missed in."""


@dataclass(frozen=True)
class Episode:
    """One episode, as `brake status` shows it."""

    episode: str
    opened_at: datetime
    opened_by: str
    no_shows: int
    window_minutes: int
    state: str
    held: int
    """Sessions it held."""
    decided_by: str | None


@dataclass(frozen=True)
class HeldSession:
    """A session an episode held, and where its hold stands (from its trail)."""

    session_id: str
    risk_tier: str
    held_at: datetime
    state: str
    """held, released or stood_down: its latest brake event."""


class BrakeStore:
    """Counts, episodes and holds; every statement parameterised."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def counts(self, since: datetime, until: datetime) -> Counts:
        """Sessions that started in (since, until], and how many of them were missed."""
        row = await self._pool.fetchrow(_COUNT, since, until, NOT_MISSED)
        assert row is not None
        return Counts(missed=row["missed"], due=row["due"])

    async def counts_of(self, since: datetime, until: datetime, modality: str) -> Counts:
        """The same, for the sessions of one modality (a video platform's outage)."""
        row = await self._pool.fetchrow(_COUNT_MODALITY, since, until, NOT_MISSED, modality)
        assert row is not None
        return Counts(missed=row["missed"], due=row["due"])

    async def hold(self, *, session_id: str, risk_tier: str, at: datetime, counts: Counts,
                   window_minutes: int, current_for: timedelta,
                   window: timedelta | None = None) -> Hold | None:
        """Hold `session_id` in the current episode, opening one if there is none.

        The current episode is the latest opened within `current_for`, while undecided.
        Returns None when the latest was decided (released or stood down) within `window`
        of its opening: the supervisor has judged this burst, and a session missed after
        the decision is not held by it. A burst after that window opens a new episode.
        """
        window = timedelta(minutes=window_minutes) if window is None else window
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", EPISODE_LOCK)
            row = await connection.fetchrow(
                "SELECT id, opened_at, opened_by, state, no_shows, window_minutes"
                " FROM brake_episodes"
                " WHERE opened_at > $1 ORDER BY opened_at DESC, id DESC LIMIT 1",
                at - current_for)
            if row is not None and row["state"] != "open":
                if row["opened_at"] > at - window:
                    return None
                row = None
            if row is None:
                row = await connection.fetchrow(
                    "INSERT INTO brake_episodes (opened_at, opened_by, no_shows, due,"
                    " window_minutes) VALUES ($1, $2, $3, $4, $5)"
                    " RETURNING id, opened_by, state, no_shows, window_minutes",
                    at, session_id, counts.missed, counts.due, window_minutes)
                assert row is not None
            await connection.execute(
                "INSERT INTO brake_holds (episode_id, session_id, risk_tier, held_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                row["id"], session_id, risk_tier, at)
        return Hold(episode=str(row["id"]), paged=row["opened_by"] == session_id,
                    no_shows=row["no_shows"], window_minutes=row["window_minutes"])

    async def episodes(self, *, open_only: bool = False) -> list[Episode]:
        """Episodes, newest first (only the undecided ones with `open_only`)."""
        rows = await self._pool.fetch(
            "SELECT e.id, e.opened_at, e.opened_by, e.no_shows, e.window_minutes, e.state,"
            " e.decided_by, (SELECT count(*) FROM brake_holds AS h WHERE h.episode_id = e.id)"
            " AS held FROM brake_episodes AS e WHERE NOT $1 OR e.state = 'open'"
            " ORDER BY e.opened_at DESC, e.id DESC LIMIT 50", open_only)
        return [Episode(episode=str(row["id"]), opened_at=row["opened_at"],
                        opened_by=row["opened_by"], no_shows=row["no_shows"],
                        window_minutes=row["window_minutes"], state=row["state"],
                        held=row["held"], decided_by=row["decided_by"]) for row in rows]

    async def held_sessions(self, episode: str) -> list[HeldSession]:
        """The sessions `episode` held, each with its latest brake event."""
        rows = await self._pool.fetch(
            "SELECT h.session_id, h.risk_tier, h.held_at, (SELECT a.event_type FROM"
            " audit_events AS a WHERE a.session_id = h.session_id AND a.event_type ="
            " ANY($2::text[]) ORDER BY a.sequence DESC LIMIT 1) AS latest"
            " FROM brake_holds AS h WHERE h.episode_id = $1 ORDER BY h.held_at, h.session_id",
            int(episode), BRAKE_EVENTS)
        return [HeldSession(session_id=row["session_id"], risk_tier=row["risk_tier"],
                            held_at=row["held_at"],
                            state=(row["latest"] or "brake_held").removeprefix("brake_"))
                for row in rows]

    async def episode_of(self, session_id: str) -> str | None:
        """The latest episode that held `session_id`, if any."""
        value = await self._pool.fetchval(
            "SELECT episode_id FROM brake_holds WHERE session_id = $1"
            " ORDER BY held_at DESC LIMIT 1", session_id)
        return None if value is None else str(value)

    async def decide(self, episode: str, state: str, by: str, at: datetime) -> bool:
        """Mark an open episode released or stood down; False if it was not open."""
        done = await self._pool.fetchval(
            "UPDATE brake_episodes SET state = $2, decided_by = $3, decided_at = $4"
            " WHERE id = $1 AND state = 'open' RETURNING id", int(episode), state, by, at)
        return done is not None
