"""The console's tables: accounts, signed-in sessions, the access log (migration 0008).

SQL only; what a sign-in or a page view means lives in `missed_session.application.console`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from missed_session.domain.models import AuditEvent, FollowUpPlan
from missed_session.store.connection import Connection
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
class SessionLine:
    """A session as lists show it: when, who, where it stands."""

    session_id: str
    client_ref: str
    first_name: str | None
    therapist_id: str
    start: datetime
    risk_tier: str
    last_event: str
    """The latest event of its trail (its status in the trail's words)."""
    outcome: str | None
    """How it closed, once closed."""


@dataclass(frozen=True)
class ClientLine:
    """A client found by name or ref."""

    client_ref: str
    first_name: str | None
    last_session: datetime | None


@dataclass(frozen=True)
class Access:
    """One row of the access log."""

    viewed_at: datetime
    clinician_id: str
    page: str
    session_id: str | None
    allowed: bool
    source: str | None = None
    client_ref: str | None = None


class ConsoleStore:
    """Accounts, browser sessions and the access log in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def change_cursor(self) -> str:
        """A value that changes whenever something a console page shows may have changed.

        The newest trail row's time (indexed), and the newest row version (`xmin`, which
        every insert and update renews) of the notices and the therapist's inbox: a live
        page long-polls on it, and renders only when it moved. Not an order, only a change.
        """
        cursor: str = await self._pool.fetchval(
            "SELECT concat_ws('|', (SELECT max(recorded_at) FROM audit_events)::text,"
            " (SELECT max(xmin::text::bigint) FROM notices)::text,"
            " (SELECT max(xmin::text::bigint) FROM therapist_inbox)::text)")
        return cursor

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
                            allowed: bool, source: str | None = None,
                            client_ref: str | None = None) -> None:
        """Append a page view (or a refusal, or a sign-in attempt) to the access log."""
        await self._pool.execute(
            "INSERT INTO console_access_log (clinician_id, page, session_id, allowed, source,"
            " client_ref) VALUES ($1, $2, $3, $4, $5, $6)",
            clinician_id, page, session_id, allowed, source, client_ref)

    # -- sign-in throttling (migration 0013) --------------------------------------------------

    @asynccontextmanager
    async def attempt(self, clinician_id: str, source: str) -> AsyncIterator[Connection]:
        """A transaction holding the account's and the source's sign-in locks.

        Concurrent attempts for one id (or from one address) are counted one after the
        other, so a burst in parallel cannot all be checked before the first is counted.
        Locks are taken account first, then source, by every caller (no deadlock).
        """
        async with self._pool.acquire() as connection, connection.transaction():
            for key in (f"console-sign-in-account:{clinician_id}",
                        f"console-sign-in-source:{source}"):
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            yield connection

    async def record_failure(self, *, clinician_id: str, source: str, at: datetime,
                             connection: Connection | None = None) -> int:
        """A failed sign-in for the id typed, from `source`; returns its row id."""
        row_id: int = await (connection or self._pool).fetchval(
            "INSERT INTO console_sign_in_failures (failed_at, clinician_id, source)"
            " VALUES ($1, $2, $3) RETURNING id", at, clinician_id, source)
        return row_id

    async def forget_failure(self, row_id: int) -> None:
        """An attempt counted in advance succeeded after all."""
        await self._pool.execute("DELETE FROM console_sign_in_failures WHERE id = $1", row_id)

    async def failures(self, *, clinician_id: str, source: str, since: datetime,
                       connection: Connection | None = None,
                       ) -> tuple[list[datetime], list[datetime]]:
        """Failed sign-ins since `since`, oldest first: for the account, and from the source."""
        rows = await (connection or self._pool).fetch(
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
            "SELECT viewed_at, clinician_id, page, session_id, allowed, source, client_ref"
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

    # -- lists of sessions and clients ---------------------------------------------------------

    async def sessions_between(self, start: datetime, end: datetime, *,
                               therapist_id: str | None = None,
                               client_ref: str | None = None,
                               limit: int = 200) -> list[SessionLine]:
        """Sessions starting in [start, end) (as last rescheduled), of a therapist or client."""
        rows = await self._pool.fetch(_SESSIONS + " WHERE l.start_at >= $1 AND l.start_at < $2"
                                      " AND ($3::text IS NULL OR l.therapist_id = $3)"
                                      " AND ($4::text IS NULL OR l.client_ref = $4)"
                                      " ORDER BY l.start_at LIMIT $5",
                                      start, end, therapist_id, client_ref, limit)
        return [SessionLine(**dict(row)) for row in rows]

    async def find_clients(self, text: str, *, therapist_id: str | None = None,
                           limit: int = 30) -> list[ClientLine]:
        """Clients whose first name or ref contains `text` (of a therapist's sessions only)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._pool.fetch(
            "WITH booked AS (SELECT data->>'client_ref' AS client_ref,"
            " max((data->>'start')::timestamptz) AS last_session FROM audit_events"
            " WHERE event_type = 'scheduled'"
            " AND ($2::text IS NULL OR data->>'therapist_id' = $2)"
            " GROUP BY data->>'client_ref')"
            " SELECT b.client_ref, c.first_name, b.last_session FROM booked b"
            " LEFT JOIN clients c ON c.client_ref = b.client_ref"
            " WHERE b.client_ref ILIKE $1 OR c.first_name ILIKE $1"
            " ORDER BY c.first_name NULLS LAST, b.client_ref LIMIT $3",
            pattern, therapist_id, limit)
        return [ClientLine(**dict(row)) for row in rows]

    async def client_therapists(self, client_ref: str) -> set[str]:
        """The therapists who have had sessions with the client."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT data->>'therapist_id' AS therapist_id FROM audit_events"
            " WHERE event_type = 'scheduled' AND data->>'client_ref' = $1", client_ref)
        return {row["therapist_id"] for row in rows}

    async def client_notices(self, client_ref: str) -> list[NoticeRow]:
        """Unfinished notices of the client's sessions."""
        rows = await self._pool.fetch(
            "SELECT n.* FROM notices n WHERE n.state IN ('open', 'exhausted', 'acknowledged')"
            " AND n.session_id IN (SELECT session_id FROM audit_events"
            " WHERE event_type = 'scheduled' AND data->>'client_ref' = $1)"
            " ORDER BY n.opened_at DESC", client_ref)
        return [NoticeRow(**dict(row)) for row in rows]

    # -- measures ------------------------------------------------------------------------------

    async def attendance_since(self, since: datetime) -> list[asyncpg.Record]:
        """Closed sessions since `since`: therapist, start, outcome."""
        return await self._pool.fetch(
            "SELECT session_id, client_ref, therapist_id, start_at, outcome FROM attendance"
            " WHERE start_at >= $1 ORDER BY start_at", since)

    async def first_outreach_delays(self, since: datetime) -> list[float]:
        """Seconds from each no-show to its first outreach step."""
        rows = await self._pool.fetch(
            "SELECT extract(epoch FROM min(o.occurred_at) - g.occurred_at)::float8 AS s"
            " FROM audit_events g JOIN audit_events o ON o.session_id = g.session_id"
            " AND o.event_type IN ('outreach_attempted', 'voicemail_left', 'message_sent',"
            " 'outreach_failed', 'outreach_skipped')"
            " WHERE g.event_type = 'grace_period_expired' AND g.occurred_at >= $1"
            " GROUP BY g.session_id, g.occurred_at", since)
        return [float(row["s"]) for row in rows]

    async def notice_events_since(self, since: datetime, kinds: list[str]) -> list[AuditEvent]:
        """Notice (and session) events of the given types since `since`."""
        rows = await self._pool.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data::text AS data"
            " FROM audit_events WHERE event_type = ANY($2::text[]) AND occurred_at >= $1"
            " ORDER BY occurred_at", since, kinds)
        return [AuditEvent.model_validate({**dict(row), "data": json.loads(row["data"])})
                for row in rows]


_SESSIONS = (
    "WITH booked AS (SELECT s.session_id, s.data->>'client_ref' AS client_ref,"
    " s.data->>'therapist_id' AS therapist_id, s.data->>'risk_tier' AS risk_tier,"
    " COALESCE((SELECT (r.data->>'start')::timestamptz FROM audit_events r"
    "  WHERE r.session_id = s.session_id AND r.event_type = 'rescheduled'"
    "  ORDER BY r.sequence DESC LIMIT 1), (s.data->>'start')::timestamptz) AS start_at"
    " FROM audit_events s WHERE s.event_type = 'scheduled')"
    " SELECT l.session_id, l.client_ref, c.first_name, l.therapist_id, l.start_at AS start,"
    " l.risk_tier, (SELECT e.event_type FROM audit_events e WHERE e.session_id = l.session_id"
    "  ORDER BY e.sequence DESC LIMIT 1) AS last_event, a.outcome"
    " FROM booked l LEFT JOIN clients c ON c.client_ref = l.client_ref"
    " LEFT JOIN attendance a ON a.session_id = l.session_id"
)
"""Sessions from their `scheduled` events (start as last rescheduled), with where they stand."""
