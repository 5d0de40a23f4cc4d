"""The console's use cases: accounts and sign-in, what a viewer may read, the pages' data.

The console's routes call these (and the session and notice use cases beside them), never
Temporal or PostgreSQL. Every read of a client's data goes through `record_view`, so the
access log holds who viewed what, and when, including the refusals.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import ValidationError
from temporalio.service import RPCError

from missed_session import search_attributes
from missed_session.application import notices as notice_cases
from missed_session.application.problems import describe
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.application.sessions import WORKFLOW_PREFIX
from missed_session.domain import decisions, events
from missed_session.domain.access import Viewer, ViewerRole, may_decide, may_view
from missed_session.domain.models import (
    AuditEvent,
    ClinicianDecision,
    DecisionKind,
    FollowUpPlan,
    SessionBooking,
    SessionState,
    SessionStatus,
)
from missed_session.domain.notices import Acknowledgment, AckVia, NoticeSettings, Resolution
from missed_session.store.console import ConsoleStore
from missed_session.store.notices import NoticeRow, NoticeStore, RosterStore

ACCOUNT_KINDS = ("clinician", "compliance_reviewer")
"""A clinician acts in their roster role; a reviewer (not on the roster) reads only."""
MIN_PASSWORD_LENGTH = 12
"""Shorter passwords are refused when set."""
MAX_PASSWORD_LENGTH = 256
"""Longer input is refused before hashing (argon2 would take it, the form need not)."""
SESSION_LIFETIME = timedelta(hours=8)
"""A sign-in lasts one working shift at most."""
ACTIVE_STATUSES = (SessionStatus.NO_SHOW, SessionStatus.OUTREACH, SessionStatus.ESCALATION)
"""What the practice board lists as needing attention."""
_HASHER = PasswordHasher()


def token_hash(token: str) -> str:
    """How a cookie's token is stored: its SHA-256, so a database read signs nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- accounts ---------------------------------------------------------------------------------


async def set_password(app: Application, clinician_id: str, password: str, *,
                       reviewer: bool = False) -> Result:
    """Create or reset a console account; a clinician must be on the roster in force."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return Result(ResultKind.BAD_INPUT, f"password: must be {MIN_PASSWORD_LENGTH} to "
                      f"{MAX_PASSWORD_LENGTH} characters")
    pool = await app.pool()
    if not reviewer and await _roster_role(app, clinician_id) is None:
        return Result(ResultKind.NOT_FOUND, f"clinician {clinician_id!r} is not on the roster "
                      "in force (load it with `starter.py roster load`, or use --reviewer "
                      "for a compliance reviewer)")
    hashed = await asyncio.to_thread(_HASHER.hash, password)
    kind = "compliance_reviewer" if reviewer else "clinician"
    await ConsoleStore(pool).set_password(clinician_id, kind, hashed)
    return Result(ResultKind.APPLIED, f"console password set for {clinician_id} ({kind}); "
                  "their signed-in sessions have ended")


@dataclass(frozen=True)
class SignIn:
    """A successful sign-in: the cookie's token and the form token of the session."""

    token: str
    csrf_token: str
    expires_at: datetime


async def sign_in(app: Application, clinician_id: str, password: str,
                  now: datetime) -> SignIn | None:
    """Check the password and open a browser session.

    None for an unknown account, a wrong password or a clinician no longer on the roster:
    one answer for all, so accounts cannot be probed.
    """
    store = ConsoleStore(await app.pool())
    account = await store.account(clinician_id)
    if account is None or len(password) > MAX_PASSWORD_LENGTH:
        await asyncio.to_thread(_verify, _dummy_hash(), password)  # same time either way
        return None
    if not await asyncio.to_thread(_verify, account.password_hash, password):
        return None
    if account.kind == "clinician" and await _roster_role(app, clinician_id) is None:
        return None
    if _HASHER.check_needs_rehash(account.password_hash):
        await store.rehash(clinician_id, await asyncio.to_thread(_HASHER.hash, password))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires_at = now + SESSION_LIFETIME
    await store.open_session(token_hash=token_hash(token), clinician_id=clinician_id,
                             csrf_token=csrf, now=now, expires_at=expires_at)
    return SignIn(token, csrf, expires_at)


async def viewer(app: Application, token: str, now: datetime) -> Viewer | None:
    """Who holds this cookie, in the role they act in now; None if expired or unknown."""
    store = ConsoleStore(await app.pool())
    signed_in = await store.session(token_hash(token), now)
    if signed_in is None:
        return None
    account = await store.account(signed_in.clinician_id)
    if account is None:
        return None
    if account.kind == "compliance_reviewer":
        return Viewer(account.clinician_id, ViewerRole.COMPLIANCE, signed_in.csrf_token)
    role = await _roster_role(app, account.clinician_id)
    if role is None:  # taken off the roster since signing in
        return None
    return Viewer(account.clinician_id, role, signed_in.csrf_token)


async def sign_out(app: Application, token: str) -> None:
    """End the browser session."""
    await ConsoleStore(await app.pool()).close_session(token_hash(token))


async def record_view(app: Application, who: Viewer, page: str, session_id: str | None, *,
                      allowed: bool = True) -> None:
    """Append a view of client data (or a refused one) to the access log."""
    await ConsoleStore(await app.pool()).record_access(
        clinician_id=who.clinician_id, page=page, session_id=session_id, allowed=allowed)


async def practice_time_zone(app: Application) -> ZoneInfo:
    """The roster's time zone: the clinicians' clock."""
    current = await RosterStore(await app.pool()).current()
    name = current.roster.time_zone if current is not None and current.roster else "UTC"
    return ZoneInfo(name)


# -- a session --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    """Everything the session page shows."""

    session_id: str
    therapist_id: str | None
    booking: SessionBooking | None
    state: SessionState | None
    state_problem: str | None
    trail: tuple[AuditEvent, ...]
    plan: FollowUpPlan | None
    notices: tuple[NoticeRow, ...]
    decisions: tuple[DecisionKind, ...]
    may_decide: bool

    def details(self, event: AuditEvent) -> dict[str, object]:
        """An event's details as its model reads them."""
        try:
            return events.read(event).model_dump(mode="json", exclude_none=True)
        except events.UnreadableEventError as error:
            return {**event.data, "unreadable": str(error)}


async def session_view(app: Application, who: Viewer, session_id: str, *,
                       page: str | None = "session") -> Result | SessionView:
    """The session page's data, or a refused/not_found result.

    The view is logged as `page` (refusals always); None leaves it to the caller, for a
    live region that logs only when it shows something new.
    """
    pool = await app.pool()
    trail_result = await app.audit(session_id)
    trail = trail_result.trail
    booking = await _booking(app, session_id)
    therapist_id = _therapist(trail) or (booking.therapist_id if booking else None)
    if therapist_id is None:
        return Result(ResultKind.NOT_FOUND, f"no session {session_id}", session_id)
    if not may_view(who, therapist_id):
        await record_view(app, who, page or "session", session_id, allowed=False)
        return Result(ResultKind.REFUSED, f"session {session_id} is not one of your clients' "
                      "sessions", session_id)
    if page is not None:
        await record_view(app, who, page, session_id)
    status = await app.status(session_id)
    state = status.state
    rows = [row for row in await NoticeStore(pool).listed(unfinished_only=False, limit=500)
            if row.session_id == session_id]
    return SessionView(
        session_id=session_id, therapist_id=therapist_id, booking=booking, state=state,
        state_problem=None if state is not None else status.message, trail=trail,
        plan=await ConsoleStore(pool).plan(session_id), notices=tuple(rows),
        decisions=possible_decisions(state), may_decide=may_decide(who, therapist_id))


def possible_decisions(state: SessionState | None) -> tuple[DecisionKind, ...]:
    """The decisions the session's status allows now (the validator has the last word)."""
    if state is None:
        return ()
    if state.status in decisions.OUTREACH_STATUSES:
        return (DecisionKind.ESCALATE_NOW, DecisionKind.MARK_SAFE, DecisionKind.STAND_DOWN,
                DecisionKind.ADD_NOTE)
    if state.status in decisions.OPEN_STATUSES:
        return (DecisionKind.ADD_NOTE,)
    return ()


async def decide(app: Application, who: Viewer, session_id: str, kind: DecisionKind, *,
                 reason: str, legal_basis: str) -> Result:
    """A decision from the console: only by someone who may decide on this session."""
    view = await session_view(app, who, session_id)
    if isinstance(view, Result):
        return view
    if not view.may_decide:
        return Result(ResultKind.REFUSED, f"{kind.value} refused: a {who.role.value} "
                      "decides nothing", session_id)
    try:
        decision = ClinicianDecision(clinician_id=who.clinician_id, reason=reason,
                                     legal_basis=legal_basis)
    except ValidationError as error:
        return Result(ResultKind.BAD_INPUT, describe(error), session_id)
    return await app.decide(session_id, kind, decision)


# -- notices ----------------------------------------------------------------------------------


async def my_notices(app: Application, who: Viewer) -> list[NoticeRow]:
    """Notices sent to the viewer, unfinished and urgent first."""
    return await ConsoleStore(await app.pool()).notices_for(who.clinician_id)


async def acknowledge(app: Application, who: Viewer,
                      notice_key: str) -> notice_cases.NoticeResult:
    """Acknowledge as the viewer (the notice workflow refuses one it did not notify)."""
    if not who.decides:
        return _not_yours(notice_key, who)
    return await notice_cases.acknowledge(
        await app.temporal(), await app.pool(), notice_key,
        Acknowledgment(via=AckVia.CONSOLE, clinician_id=who.clinician_id))


async def resolve(app: Application, who: Viewer, notice_key: str, outcome: str,
                  note: str) -> notice_cases.NoticeResult:
    """Resolve as the viewer, with an outcome."""
    if not who.decides:
        return _not_yours(notice_key, who)
    try:
        resolution = Resolution(clinician_id=who.clinician_id, outcome=outcome.strip(),
                                note=note, via=AckVia.CONSOLE)
    except ValidationError as error:
        return notice_cases.NoticeResult(notice_cases.ResultKind.BAD_INPUT,
                                         describe(error, subject="resolution"), notice_key)
    return await notice_cases.resolve(await app.temporal(), await app.pool(), notice_key,
                                      resolution)


def _not_yours(notice_key: str, who: Viewer) -> notice_cases.NoticeResult:
    return notice_cases.NoticeResult(notice_cases.ResultKind.REFUSED,
                                     f"a {who.role.value} acknowledges nothing", notice_key)


# -- the practice board -----------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveSession:
    """A session in no-show, outreach or escalation, as its search attributes say."""

    session_id: str
    status: str
    risk_tier: str
    therapist_id: str
    start: datetime | None


@dataclass(frozen=True)
class Board:
    """The practice board's three lists."""

    active: dict[str, list[ActiveSession]] = field(default_factory=dict)
    overdue_notices: list[NoticeRow] = field(default_factory=list)
    no_shows_today: list[AuditEvent] = field(default_factory=list)
    problem: str | None = None


async def board(app: Application, who: Viewer, now: datetime, *,
                record: bool = True) -> Board:
    """Sessions needing attention by risk tier, notices past their policy, today's no-shows.

    The view is logged unless `record` is False (a live refresh logs only what is new).
    """
    if record:
        await record_view(app, who, "board", None)
    pool = await app.pool()
    zone = await practice_time_zone(app)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    current = await RosterStore(pool).current()
    settings = current.notices if current is not None else NoticeSettings()
    unfinished = await NoticeStore(pool).listed(unfinished_only=True, limit=500)
    overdue = [row for row in unfinished
               if past_policy(row, settings, now, time_scale=app.settings.time_scale)]
    no_shows = await ConsoleStore(pool).no_shows_since(midnight)
    try:
        active = await _active_sessions(app)
    except (UnavailableError, RPCError) as error:
        return Board({}, overdue, no_shows, f"sessions by risk tier are unavailable: {error}")
    return Board(active, overdue, no_shows)


def past_policy(row: NoticeRow, settings: NoticeSettings, now: datetime, *,
                time_scale: float) -> bool:
    """Unacknowledged beyond its policy: out of steps, or past its first rung's wait."""
    if row.state == "exhausted":
        return True
    policy = next((p for p in settings.policies if p.name == row.policy), None)
    if policy is None:
        return False
    return now - row.opened_at > timedelta(minutes=policy.steps[0].minutes / time_scale)


async def _active_sessions(app: Application) -> dict[str, list[ActiveSession]]:
    client = await app.temporal()
    wanted = ", ".join(f"'{status.value}'" for status in ACTIVE_STATUSES)
    query = (f"{search_attributes.SESSION_STATUS.name} IN ({wanted}) "
             "AND ExecutionStatus = 'Running'")
    found: dict[str, list[ActiveSession]] = {"high": [], "elevated": [], "standard": []}
    async for execution in client.list_workflows(query):
        attributes = execution.typed_search_attributes
        tier = attributes.get(search_attributes.RISK_TIER) or "standard"
        found.setdefault(tier, []).append(ActiveSession(
            session_id=execution.id.removeprefix(WORKFLOW_PREFIX),
            status=attributes.get(search_attributes.SESSION_STATUS) or "",
            risk_tier=tier, therapist_id=attributes.get(search_attributes.THERAPIST_ID) or "",
            start=attributes.get(search_attributes.SESSION_START)))
    return found


# -- helpers ----------------------------------------------------------------------------------


async def _roster_role(app: Application, clinician_id: str) -> ViewerRole | None:
    current = await RosterStore(await app.pool()).current()
    if current is None or current.roster is None:
        return None
    clinician = current.roster.clinician(clinician_id)
    return None if clinician is None else ViewerRole(clinician.role.value)


async def _booking(app: Application, session_id: str) -> SessionBooking | None:
    try:
        sessions = await app.sessions()
        return await sessions.booking(session_id)
    except (UnavailableError, RuntimeError):
        return None


def _therapist(trail: Sequence[AuditEvent]) -> str | None:
    for event in trail:
        if event.event_type.value == "scheduled":
            therapist = event.data.get("therapist_id")
            return therapist if isinstance(therapist, str) else None
    return None


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account is unknown, so both answers take as long."""
    return _HASHER.hash(secrets.token_urlsafe(16))
