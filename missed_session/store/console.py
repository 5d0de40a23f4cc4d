"""The console's tables: accounts, signed-in sessions, the access log (migration 0008).

SQL only; what a sign-in or a page view means lives in `missed_session.application.console`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from missed_session.domain.models import AuditEvent, FollowUpPlan
from missed_session.store.notices import NoticeRow


@dataclass(frozen=True)
class Account:
    """A console account: who, what kind, the argon2 hash."""

    clinician_id: str
    kind: str
    password_hash: str


@dataclass(frozen=True)
class SignedIn:
    """A live browser session."""

    clinician_id: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Access:
    """One row of the access log."""

    viewed_at: datetime
    clinician_id: str
    page: str
    session_id: str | None
    allowed: bool
    source: str | None = None


class ConsoleStore:
    """Accounts, browser sessions and the access log in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def set_password(self, clinician_id: str, kind: str, password_hash: str) -> None:
        """Create the account or replace its hash; its browser sessions end."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO console_accounts (clinician_id, kind, password_hash)"
                " VALUES ($1, $2, $3) ON CONFLICT (clinician_id) DO UPDATE"
                " SET kind = $2, password_hash = $3, updated_at = now()",
                clinician_id, kind, password_hash)
            await connection.execute(
                "DELETE FROM console_sessions WHERE clinician_id = $1", clinician_id)

    async def account(self, clinician_id: str) -> Account | None:
        """The account, if there is one."""
        row = await self._pool.fetchrow(
            "SELECT clinician_id, kind, password_hash FROM console_accounts"
            " WHERE clinician_id = $1", clinician_id)
        return Account(**dict(row)) if row is not None else None

    async def rehash(self, clinician_id: str, password_hash: str) -> None:
        """Store a hash made with newer parameters (same password)."""
        await self._pool.execute(
            "UPDATE console_accounts SET password_hash = $2 WHERE clinician_id = $1",
            clinician_id, password_hash)

    async def open_session(self, *, token_hash: str, clinician_id: str, csrf_token: str,
                           now: datetime, expires_at: datetime) -> None:
        """Record a sign-in."""
        await self._pool.execute(
            "INSERT INTO console_sessions (token_hash, clinician_id, csrf_token, created_at,"
            " expires_at) VALUES ($1, $2, $3, $4, $5)",
            token_hash, clinician_id, csrf_token, now, expires_at)

    async def session(self, token_hash: str, now: datetime) -> SignedIn | None:
        """The browser session behind a cookie, unless it has expired."""
        row = await self._pool.fetchrow(
            "SELECT clinician_id, csrf_token, expires_at FROM console_sessions"
            " WHERE token_hash = $1 AND expires_at > $2", token_hash, now)
        return SignedIn(**dict(row)) if row is not None else None

    async def close_session(self, token_hash: str) -> None:
        """Sign out (and forget sessions long expired)."""
        await self._pool.execute("DELETE FROM console_sessions WHERE token_hash = $1"
                                 " OR expires_at < now() - interval '1 day'", token_hash)

    async def record_access(self, *, clinician_id: str, page: str, session_id: str | None,
                            allowed: bool, source: str | None = None) -> None:
        """Append a page view (or a refusal, or a sign-in attempt) to the access log."""
        await self._pool.execute(
            "INSERT INTO console_access_log (clinician_id, page, session_id, allowed, source)"
            " VALUES ($1, $2, $3, $4, $5)", clinician_id, page, session_id, allowed, source)

    # -- sign-in throttling (migration 0018) --------------------------------------------------

    async def record_failure(self, *, clinician_id: str, source: str, at: datetime) -> None:
        """A failed sign-in for the id typed, from `source`."""
        await self._pool.execute(
            "INSERT INTO console_sign_in_failures (failed_at, clinician_id, source)"
            " VALUES ($1, $2, $3)", at, clinician_id, source)

    async def failures(self, *, clinician_id: str, source: str,
                       since: datetime) -> tuple[list[datetime], list[datetime]]:
        """Failed sign-ins since `since`, oldest first: for the account, and from the source."""
        rows = await self._pool.fetch(
            "SELECT failed_at, clinician_id = $1 AS account, source = $2 AS here"
            " FROM console_sign_in_failures WHERE failed_at >= $3"
            " AND (clinician_id = $1 OR source = $2) ORDER BY failed_at",
            clinician_id, source, since)
        return ([row["failed_at"] for row in rows if row["account"]],
                [row["failed_at"] for row in rows if row["here"]])

    async def clear_failures(self, *, clinician_id: str, before: datetime) -> None:
        """A success: the account's failures are forgotten (and everyone's very old ones)."""
        await self._pool.execute(
            "DELETE FROM console_sign_in_failures WHERE clinician_id = $1 OR failed_at < $2",
            clinician_id, before)

    async def accesses(self, session_id: str | None = None) -> list[Access]:
        """The access log, oldest first (of one session, or all)."""
        rows = await self._pool.fetch(
            "SELECT viewed_at, clinician_id, page, session_id, allowed, source"
            " FROM console_access_log"
            " WHERE $1::text IS NULL OR session_id = $1 ORDER BY id", session_id)
        return [Access(**dict(row)) for row in rows]

    async def notices_for(self, clinician_id: str, *, limit: int = 100) -> list[NoticeRow]:
        """Notices sent to the clinician: unfinished first, urgent first, newest first."""
        rows = await self._pool.fetch(
            "SELECT n.* FROM notices n WHERE EXISTS (SELECT 1 FROM notice_codes c"
            " WHERE c.notice_key = n.key AND c.clinician_id = $1)"
            " ORDER BY (n.state IN ('open', 'exhausted')) DESC, (n.priority = 'urgent') DESC,"
            " n.opened_at DESC LIMIT $2", clinician_id, limit)
        return [NoticeRow(**dict(row)) for row in rows]

    async def plan(self, session_id: str) -> FollowUpPlan | None:
        """The session's follow-up plan, once made."""
        stored = await self._pool.fetchval(
            "SELECT plan FROM follow_up_plans WHERE session_id = $1", session_id)
        return None if stored is None else FollowUpPlan.model_validate_json(stored)

    async def no_shows_since(self, since: datetime) -> list[AuditEvent]:
        """The `scheduled` events of sessions whose grace period expired since `since`."""
        rows = await self._pool.fetch(
            "SELECT s.session_id, s.sequence, s.event_type, s.occurred_at, s.data::text AS data"
            " FROM audit_events g JOIN audit_events s"
            " ON s.session_id = g.session_id AND s.event_type = 'scheduled'"
            " WHERE g.event_type = 'grace_period_expired' AND g.occurred_at >= $1"
            " ORDER BY g.occurred_at DESC LIMIT 200", since)
        return [AuditEvent.model_validate({**dict(row), "data": json.loads(row["data"])})
                for row in rows]


    # -- what the pages show beside a notice ---------------------------------------------------

    async def trails(self, stream_ids: list[str]) -> dict[str, list[AuditEvent]]:
        """The audit trails of sessions or notices (by stream id), each oldest first."""
        rows = await self._pool.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data::text AS data"
            " FROM audit_events WHERE session_id = ANY($1::text[])"
            " ORDER BY session_id, sequence", stream_ids)
        found: dict[str, list[AuditEvent]] = {key: [] for key in stream_ids}
        for row in rows:
            found[row["session_id"]].append(AuditEvent.model_validate(
                {**dict(row), "data": json.loads(row["data"])}))
        return found

    async def titles(self, keys: list[str]) -> dict[str, str]:
        """What each notice says happened (its inbox title), by notice key."""
        rows = await self._pool.fetch(
            "SELECT key, title FROM therapist_inbox WHERE key = ANY($1::text[])", keys)
        return {row["key"]: row["title"] for row in rows}

    async def first_names(self, client_refs: list[str]) -> dict[str, str]:
        """Clients' first names from the directory, by ref (those it knows)."""
        rows = await self._pool.fetch(
            "SELECT client_ref, first_name FROM clients WHERE client_ref = ANY($1::text[])",
            client_refs)
        return {row["client_ref"]: row["first_name"] for row in rows}

    async def session_notices(self, session_id: str) -> list[NoticeRow]:
        """The session's notices, oldest first."""
        rows = await self._pool.fetch(
            "SELECT * FROM notices WHERE session_id = $1 ORDER BY opened_at", session_id)
        return [NoticeRow(**dict(row)) for row in rows]
