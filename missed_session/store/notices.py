"""PostgreSQL for the roster and the notices.

Versions of the roster, where each notice stands, the codes sent (by hash) and the
refusals. Every statement is parameterised.

A notice's audit events live in `audit_events` under their own stream id, the notice key
(`<session id>/<name>`; a session id never contains `/`), written by the notice workflow
alone, so that two writers never number the same trail: `notice_trails` reads them back
for a session.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.domain.notices import NoticeSettings
from missed_session.domain.roster import Roster

STATES = ("open", "exhausted", "acknowledged", "resolved")
"""A notice's states, in the only order it moves through them (exhausted may be skipped)."""


@dataclass(frozen=True)
class RosterVersion:
    """One loaded roster."""

    version: int
    """Its number (increasing with each load)."""
    roster: Roster | None
    """The clinicians and rota (None: the file had none)."""
    notices: NoticeSettings
    """The notice rules."""
    loaded_at: datetime
    """When it was loaded."""
    source: str
    """The file it came from."""


@dataclass(frozen=True)
class NoticeRow:
    """Where one notice stands."""

    key: str
    session_id: str
    therapist_id: str
    kind: str
    priority: str
    risk_tier: str
    policy: str
    state: str
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_via: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None


class RosterStore:
    """The `roster_versions` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load(self, roster: Roster | None, notices: NoticeSettings, source: str) -> int:
        """Record a new roster version (the current one from now on); returns its number."""
        roster_json = roster.model_dump_json() if roster is not None else None
        notices_json = notices.model_dump_json()
        digest = hashlib.sha256(f"{roster_json}|{notices_json}".encode()).hexdigest()[:16]
        version: int = await self._pool.fetchval(
            "INSERT INTO roster_versions (source, digest, roster, notices)"
            " VALUES ($1, $2, $3::jsonb, $4::jsonb) RETURNING version",
            source, digest, roster_json, notices_json,
        )
        return version

    async def current(self) -> RosterVersion | None:
        """The roster loaded last, if any."""
        row = await self._pool.fetchrow(
            "SELECT version, roster::text AS roster, notices::text AS notices, loaded_at, source"
            " FROM roster_versions ORDER BY version DESC LIMIT 1"
        )
        if row is None:
            return None
        return RosterVersion(
            version=row["version"],
            roster=Roster.model_validate_json(row["roster"]) if row["roster"] else None,
            notices=NoticeSettings.model_validate(json.loads(row["notices"])),
            loaded_at=row["loaded_at"],
            source=row["source"],
        )


class NoticeStore:
    """The `notices`, `notice_codes` and `notice_refusals` tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def opened(self, *, key: str, session_id: str, therapist_id: str, kind: str,
                     priority: str, risk_tier: str, policy: str, at: datetime) -> None:
        """The notice exists (idempotent)."""
        await self._pool.execute(
            "INSERT INTO notices (key, session_id, therapist_id, kind, priority, risk_tier,"
            " policy, state, opened_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $8) ON CONFLICT (key) DO NOTHING",
            key, session_id, therapist_id, kind, priority, risk_tier, policy, at,
        )

    async def moved(self, key: str, state: str, at: datetime, *, clinician_id: str | None = None,
                    via: str | None = None) -> None:
        """The notice moved to `state`; a retried or stale move never moves it back."""
        rank = STATES.index(state)
        await self._pool.execute(
            "UPDATE notices SET state = $2, updated_at = $3,"
            " acknowledged_by = CASE WHEN $2 = 'acknowledged' THEN $4 ELSE acknowledged_by END,"
            " acknowledged_via = CASE WHEN $2 = 'acknowledged' THEN $5 ELSE acknowledged_via END,"
            " acknowledged_at = CASE WHEN $2 = 'acknowledged' THEN $3 ELSE acknowledged_at END,"
            " resolved_by = CASE WHEN $2 = 'resolved' THEN $4 ELSE resolved_by END,"
            " resolved_at = CASE WHEN $2 = 'resolved' THEN $3 ELSE resolved_at END"
            " WHERE key = $1 AND array_position($6::text[], state) < $7",
            key, state, at, clinician_id, via, list(STATES), rank + 1,
        )

    async def issued(self, *, notice_key: str, clinician_id: str, code_hash: str,
                     issued_at: datetime, expires_at: datetime) -> None:
        """A code was sent to a clinician for a notice (its hash; idempotent)."""
        await self._pool.execute(
            "INSERT INTO notice_codes (notice_key, clinician_id, code_hash, issued_at,"
            " expires_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (notice_key, clinician_id) DO NOTHING",
            notice_key, clinician_id, code_hash, issued_at, expires_at,
        )

    async def by_code(self, code_hash: str) -> str | None:
        """The notice a code was sent for."""
        key: str | None = await self._pool.fetchval(
            "SELECT notice_key FROM notice_codes WHERE code_hash = $1", code_hash
        )
        return key

    async def latest_unacknowledged_for(self, clinician_id: str) -> str | None:
        """The notice most recently sent to the clinician that nobody has acknowledged."""
        key: str | None = await self._pool.fetchval(
            "SELECT c.notice_key FROM notice_codes c JOIN notices n ON n.key = c.notice_key"
            " WHERE c.clinician_id = $1 AND n.state IN ('open', 'exhausted')"
            " ORDER BY c.issued_at DESC LIMIT 1",
            clinician_id,
        )
        return key

    async def refused(self, *, notice_key: str | None, via: str, clinician_id: str | None,
                      reason: str) -> None:
        """Record a refused acknowledgment or resolution."""
        await self._pool.execute(
            "INSERT INTO notice_refusals (notice_key, via, clinician_id, reason)"
            " VALUES ($1, $2, $3, $4)",
            notice_key, via, clinician_id, reason,
        )

    async def refusals(self, notice_key: str | None = None) -> list[asyncpg.Record]:
        """Refusals recorded (for one notice, or all), oldest first."""
        return await self._pool.fetch(
            "SELECT refused_at, notice_key, via, clinician_id, reason FROM notice_refusals"
            " WHERE $1::text IS NULL OR notice_key = $1 ORDER BY id",
            notice_key,
        )

    async def unacknowledged_sent_to(self, session_id: str, clinician_id: str) -> list[str]:
        """Keys of the session's notices nobody has acknowledged that were sent to the clinician."""
        rows = await self._pool.fetch(
            "SELECT n.key FROM notices n WHERE n.session_id = $1"
            " AND n.state IN ('open', 'exhausted') AND EXISTS (SELECT 1 FROM notice_codes c"
            " WHERE c.notice_key = n.key AND c.clinician_id = $2) ORDER BY n.opened_at, n.key",
            session_id, clinician_id,
        )
        return [row["key"] for row in rows]

    async def get(self, key: str) -> NoticeRow | None:
        """One notice."""
        row = await self._pool.fetchrow("SELECT * FROM notices WHERE key = $1", key)
        return NoticeRow(**dict(row)) if row is not None else None

    async def listed(self, *, unfinished_only: bool = True, limit: int = 100) -> list[NoticeRow]:
        """Notices, newest first; by default only those nobody has acknowledged or resolved."""
        rows = await self._pool.fetch(
            "SELECT * FROM notices WHERE NOT $1 OR state IN ('open', 'exhausted')"
            " ORDER BY opened_at DESC LIMIT $2",
            unfinished_only, limit,
        )
        return [NoticeRow(**dict(row)) for row in rows]


async def notice_trails(pool: asyncpg.Pool, session_id: str) -> dict[str, list[AuditEvent]]:
    """The audit trails of a session's notices, by notice key, each in order."""
    rows = await pool.fetch(
        "SELECT session_id, sequence, event_type, occurred_at, data::text AS data"
        " FROM audit_events WHERE starts_with(session_id, $1 || '/')"
        " ORDER BY session_id, sequence",
        session_id,
    )
    trails: dict[str, list[AuditEvent]] = {}
    for row in rows:
        trails.setdefault(row["session_id"], []).append(AuditEvent(
            session_id=row["session_id"], sequence=row["sequence"],
            event_type=AuditEventType(row["event_type"]), occurred_at=row["occurred_at"],
            data=json.loads(row["data"]),
        ))
    return trails
