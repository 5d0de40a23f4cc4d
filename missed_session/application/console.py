"""The console's use cases: accounts and sign-in, what a viewer may read, the pages' data.

The console's routes call these (and the session and notice use cases beside them), never
Temporal or PostgreSQL. Every read of a client's data goes through `record_view`, so the
access log holds who viewed what, and when, including the refusals.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import hashlib
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import ValidationError
from temporalio.service import RPCError

from missed_session.application import notices as notice_cases
from missed_session.application.problems import describe
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.application.sessions import WORKFLOW_PREFIX, utc_now
from missed_session.domain import conformance, decisions, events
from missed_session.domain.access import Viewer, ViewerRole, may_decide, may_view
from missed_session.domain.clients import ClientRecord, ConsentRecord
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    ClinicianDecision,
    DecisionKind,
    FollowUpPlan,
    NoticeKind,
    Outcome,
    SessionBooking,
    SessionState,
    SessionStatus,
    upcast,
)
from missed_session.domain.notices import (
    Acknowledgment,
    AckVia,
    NoticeSettings,
    Resolution,
    Target,
    asked,
)
from missed_session.domain.roster import Roster, on_call, supervisors_for
from missed_session.store.clients import ClientDirectory
from missed_session.store.console import ClientLine, ConsoleStore, SessionLine
from missed_session.store.notices import NoticeRow, NoticeStore, RosterStore
from missed_session.temporal import search_attributes

ACCOUNT_KINDS = ("clinician", "compliance_reviewer")
"""A clinician acts in their roster role; a reviewer (not on the roster) reads only."""
MIN_PASSWORD_LENGTH = 12
"""Shorter passwords are refused when set."""
MAX_PASSWORD_LENGTH = 256
"""Longer input is refused before hashing (argon2 would take it, the form need not)."""
SESSION_LIFETIME = timedelta(hours=8)
"""A sign-in lasts one working shift at most."""
ACTIVE_STATUSES = (SessionStatus.NO_SHOW, SessionStatus.OUTREACH, SessionStatus.ESCALATION,
                   SessionStatus.AWAITING_CLINICIAN, SessionStatus.HELD)
"""What the practice board lists as needing attention."""
_HASHER = PasswordHasher()
log = structlog.get_logger(__name__)


def token_hash(token: str) -> str:
    """How a cookie's token is stored: its SHA-256, so a database read signs nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_ref(token: str) -> str:
    """How the audit trail names a sign-in: the first 12 hex digits of its stored hash."""
    return token_hash(token)[:12]


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


@dataclass(frozen=True)
class ThrottlePolicy:
    """How repeated failed sign-ins slow down and then lock an account or a source address.

    Failures count within `window`. Past `free` failures each further attempt must wait
    (1, 2, 4 ... seconds after the last failure, at most `max_delay`); at `lock_after` the
    account (or the address) is locked for `lockout` after its last failure, the right
    password included. A success clears the account's failures.
    """

    window: timedelta = timedelta(hours=1)
    free: int = 3
    lock_after: int = 10
    source_free: int = 10
    source_lock_after: int = 30
    lockout: timedelta = timedelta(minutes=15)
    max_delay: timedelta = timedelta(seconds=60)


THROTTLE = ThrottlePolicy()
"""The console's policy (an account: 3 free, then growing waits, locked at 10 failures in
an hour; an address, which may try many accounts: 10 free, locked at 30)."""


@dataclass(frozen=True)
class Throttled:
    """A sign-in attempt refused before its password was checked."""

    until: datetime
    """No attempt is checked before this."""
    locked: bool
    """A lockout (too many failures), not only a growing wait."""

    def message(self, now: datetime) -> str:
        """What the person is told (the same for a known and an unknown id)."""
        seconds = max(1, int((self.until - now).total_seconds() + 0.999))
        if self.locked:
            minutes = max(1, (seconds + 59) // 60)
            return (f"Too many failed sign-ins: sign-in is locked for about {minutes} "
                    f"minute{'s' if minutes != 1 else ''}. Ask a colleague or your "
                    "supervisor if you need access now; your password can be reset with "
                    "`starter.py console set-password`.")
        return (f"Too many failed sign-ins: wait {seconds} second{'s' if seconds != 1 else ''}"
                " before trying again.")


def _wait(failures: Sequence[datetime], free: int, lock_after: int,
          policy: ThrottlePolicy) -> Throttled | None:
    count = len(failures)
    if count < free:
        return None
    last = failures[-1]
    if count >= lock_after:
        return Throttled(last + policy.lockout, locked=True)
    delay = min(timedelta(seconds=2 ** (count - free)), policy.max_delay)
    return Throttled(last + delay, locked=False)


def throttle(account: Sequence[datetime], source: Sequence[datetime], now: datetime,
             policy: ThrottlePolicy = THROTTLE) -> Throttled | None:
    """Whether an attempt now must be refused unchecked, given the failures (oldest first)."""
    found = [t for t in (_wait(account, policy.free, policy.lock_after, policy),
                         _wait(source, policy.source_free, policy.source_lock_after, policy))
             if t is not None and t.until > now]
    if not found:
        return None
    locked = [t for t in found if t.locked]
    return max(locked or found, key=lambda t: t.until)


async def sign_in(app: Application, clinician_id: str, password: str, now: datetime, *,
                  source: str = "unknown",
                  policy: ThrottlePolicy = THROTTLE) -> SignIn | Throttled | None:
    """Check the password and open a browser session.

    None for an unknown account, a wrong password or a clinician no longer on the roster:
    one answer for all, so accounts cannot be probed. `Throttled` (before any password is
    checked) after repeated failures for this id or from this `source` address. Every
    failure, refusal and lockout is appended to the access log.
    """
    store = ConsoleStore(await app.pool())
    typed = clinician_id[:64]
    async with store.attempt(typed, source) as connection:
        account_failures, source_failures = await store.failures(
            clinician_id=typed, source=source, since=now - policy.window,
            connection=connection)
        held = throttle(account_failures, source_failures, now, policy)
        counted = 0
        if held is None:  # counted as a failure before the password is checked (and
            # forgotten if it is right): attempts in parallel are throttled like a row
            counted = await store.record_failure(clinician_id=typed, source=source, at=now,
                                                 connection=connection)
    if held is not None:
        page = "sign-in refused: locked" if held.locked else "sign-in refused: too soon"
        await store.record_access(clinician_id=typed, page=page, session_id=None,
                                  allowed=False, source=source)
        log.warning("console sign-in throttled", locked=held.locked,
                    until=held.until.isoformat())
        return held
    signed = await _check(app, store, clinician_id, password, now)
    if signed is None:
        await store.record_access(clinician_id=typed, page="sign-in failed", session_id=None,
                                  allowed=False, source=source)
        after = throttle([*account_failures, now], [*source_failures, now], now, policy)
        if after is not None and after.locked:
            await store.record_access(clinician_id=typed, page="sign-in lockout",
                                      session_id=None, allowed=False, source=source)
            log.warning("console sign-in locked out", until=after.until.isoformat())
        return None
    await store.forget_failure(counted)
    await store.clear_failures(clinician_id=typed, before=now - policy.window)
    await store.record_access(clinician_id=typed, page="sign-in", session_id=None,
                              allowed=True, source=source)
    return signed


async def _check(app: Application, store: ConsoleStore, clinician_id: str, password: str,
                 now: datetime) -> SignIn | None:
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
        return Viewer(account.clinician_id, ViewerRole.COMPLIANCE, signed_in.csrf_token,
                      session_ref(token))
    role = await _roster_role(app, account.clinician_id)
    if role is None:  # taken off the roster since signing in
        return None
    return Viewer(account.clinician_id, role, signed_in.csrf_token, session_ref(token))


async def sign_out(app: Application, token: str) -> None:
    """End the browser session."""
    await ConsoleStore(await app.pool()).close_session(token_hash(token))


async def record_view(app: Application, who: Viewer, page: str, session_id: str | None, *,
                      allowed: bool = True) -> None:
    """Append a view of client data (or a refused one) to the access log."""
    await ConsoleStore(await app.pool()).record_access(
        clinician_id=who.clinician_id, page=page, session_id=session_id, allowed=allowed)


async def change_cursor(app: Application) -> str:
    """What a live console page waits on: it changes when trails or notices do."""
    return await ConsoleStore(await app.pool()).change_cursor()


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
    cards: tuple[NoticeCard, ...] = ()
    """The session's notices as cards (ladder, acknowledge, resolve)."""
    client: ClientRecord | None = None
    """The client as the directory has them now (None: not in the directory)."""
    consents: tuple[ConsentRecord, ...] = ()
    """The client's consent records, newest first."""
    not_offered: tuple[tuple[DecisionKind, str], ...] = ()
    """Decisions not offered now, and why."""

    def details(self, event: AuditEvent) -> dict[str, object]:
        """An event's details as its model reads them."""
        try:
            return events.read(event).model_dump(mode="json", exclude_none=True)
        except events.UnreadableEventError as error:
            return {**event.data, "unreadable": str(error)}

    @property
    def max_attempts(self) -> int | None:
        """Outreach attempts the protocol makes before the client counts as unreachable."""
        return self.booking.protocol.max_attempts if self.booking else None

    @property
    def emergency_events(self) -> tuple[AuditEvent, ...]:
        """What the trail says about the emergency contact."""
        return tuple(e for e in self.trail if e.event_type.value in (
            "escalation_sent", "escalation_blocked", "escalation_uncertain"))

    @property
    def messages_sent(self) -> tuple[AuditEvent, ...]:
        """Voicemails, texts and emails left for the client."""
        return tuple(e for e in self.trail if e.event_type.value in (
            "voicemail_left", "message_sent"))

    @property
    def conformance(self) -> tuple[tuple[conformance.Pack, tuple[conformance.Finding, ...]],
                                   ...]:
        """Each published standard's rules judged on this session's trail (pure, no I/O).

        Empty when a row does not read as its event (the page still shows the trail as
        stored; `audit verify` is where a damaged trail is reported, not this panel).
        """
        try:
            return tuple((pack, conformance.assess(pack, self.trail))
                         for pack in conformance.PACKS.values())
        except events.UnreadableEventError:
            return ()

    @property
    def open_cards(self) -> tuple[NoticeCard, ...]:
        """Notices nobody has acknowledged yet."""
        return tuple(c for c in self.cards if c.open)


async def session_view(app: Application, who: Viewer, session_id: str, *,
                       page: str | None = "session",
                       now: datetime | None = None) -> Result | SessionView:
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
    rows = await ConsoleStore(pool).session_notices(session_id)
    ref = _client_ref(trail) or (booking.client.ref if booking else None)
    client, consents = await _directory(pool, ref)
    has_contact = bool(client.emergency_contacts) if client is not None else bool(
        booking is not None and booking.client.emergency_contact is not None)
    offered, not_offered = decisions_now(state, trail, has_emergency_contact=has_contact)
    return SessionView(
        session_id=session_id, therapist_id=therapist_id, booking=booking, state=state,
        state_problem=None if state is not None else status.message, trail=trail,
        plan=await ConsoleStore(pool).plan(session_id), notices=tuple(rows),
        decisions=offered, may_decide=may_decide(who, therapist_id),
        cards=tuple(await notice_cards(app, rows, now or utc_now())), client=client,
        consents=consents, not_offered=not_offered)


def possible_decisions(state: SessionState | None) -> tuple[DecisionKind, ...]:
    """The decisions the session's status allows now (the validator has the last word)."""
    return decisions_now(state, (), has_emergency_contact=True)[0]


def decisions_now(state: SessionState | None, trail: Sequence[AuditEvent], *,
                  has_emergency_contact: bool,
                  ) -> tuple[tuple[DecisionKind, ...], tuple[tuple[DecisionKind, str], ...]]:
    """The decisions that can succeed now, and those that cannot with the reason.

    Mirrors the workflow's validator (`domain.decisions.problem`) on what the trail says,
    so a control is shown only when it can work; the validator still has the last word.
    """
    if state is None:
        return (), ()
    if state.status not in decisions.OPEN_STATUSES:
        return (), ((DecisionKind.ADD_NOTE, "the session is closed"),)
    if state.status not in decisions.OUTREACH_STATUSES:
        return (DecisionKind.ADD_NOTE,), ()
    kinds = {str(e.data.get("decision")) for e in trail
             if e.event_type.value == "clinician_decision"}
    if kinds & {DecisionKind.MARK_SAFE.value, DecisionKind.STAND_DOWN.value}:
        return (DecisionKind.ADD_NOTE,), ()
    # As the session's validator: an uncertain escalation may be retried by escalate_now.
    escalated = any(e.event_type.value == "escalation_sent" for e in trail)
    offered = [DecisionKind.MARK_SAFE, DecisionKind.STAND_DOWN, DecisionKind.ADD_NOTE]
    refused: tuple[tuple[DecisionKind, str], ...] = ()
    if escalated:
        refused = ((DecisionKind.ESCALATE_NOW,
                    "the emergency contact has already been contacted"),)
    elif not has_emergency_contact:
        refused = ((DecisionKind.ESCALATE_NOW, "no emergency contact is on file"),)
    else:
        offered.insert(0, DecisionKind.ESCALATE_NOW)
    return tuple(offered), refused


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
        decision = ClinicianDecision(
            clinician_id=who.clinician_id, reason=reason, legal_basis=legal_basis,
            authenticated_by=f"console-session:{who.session_ref}" if who.session_ref else None)
    except ValidationError as error:
        return Result(ResultKind.BAD_INPUT, describe(error), session_id)
    # The application acknowledges the session's notices sent to the deciding clinician.
    return await app.decide(session_id, kind, decision)


# -- notices ----------------------------------------------------------------------------------


async def my_notices(app: Application, who: Viewer) -> list[NoticeRow]:
    """Notices sent to the viewer, unfinished and urgent first."""
    return await ConsoleStore(await app.pool()).notices_for(who.clinician_id)


@dataclass(frozen=True)
class NextRung:
    """Where an unacknowledged notice goes next, and when."""

    at: datetime
    """When, if nobody acknowledges before."""
    target: str
    """therapist, on_call or supervisor; `exhausted`: the ladder runs out then."""
    clinicians: tuple[str, ...] = ()
    """Who that is now (staff ids), where the roster says."""


@dataclass(frozen=True)
class NoticeCard:
    """One notice as a card: what happened, what was done, what is asked, who is next."""

    row: NoticeRow
    slug: str
    """A stable key for the page (a digest of the notice key)."""
    title: str
    """What happened, as the session wrote it."""
    client_ref: str | None
    client_name: str | None
    session_trail: tuple[AuditEvent, ...]
    """The session's trail: what the service already did."""
    ladder: tuple[AuditEvent, ...]
    """The notice's own trail: who was told, by which channel, when, who acknowledged."""
    asked: str
    """What the clinician is asked to do."""
    next_rung: NextRung | None

    @property
    def open(self) -> bool:
        """Nobody has acknowledged it yet."""
        return self.row.state in ("open", "exhausted")

    def open_for(self, now: datetime) -> timedelta:
        """How long since it opened (until acknowledged, if it was)."""
        end = self.row.acknowledged_at or now
        return max(end - self.row.opened_at, timedelta(0))

    @property
    def resolution(self) -> AuditEvent | None:
        """The resolution (outcome and note), once resolved."""
        return next((e for e in self.ladder if e.event_type.value == "notice_resolved"), None)


def slug(key: str) -> str:
    """A notice key as an HTML id and merge key (stable across refreshes)."""
    return "n-" + hashlib.sha256(key.encode()).hexdigest()[:12]


async def notice_cards(app: Application, rows: Sequence[NoticeRow],
                       now: datetime) -> list[NoticeCard]:
    """Cards for notices: the session's and notice's trails, titles, names, the next rung."""
    if not rows:
        return []
    pool = await app.pool()
    store = ConsoleStore(pool)
    keys = [row.key for row in rows]
    sessions = sorted({row.session_id for row in rows})
    trails = await store.trails(keys + sessions)
    titles = await store.titles(keys)
    refs = {sid: _client_ref(trails.get(sid, [])) for sid in sessions}
    names = await store.first_names([ref for ref in refs.values() if ref])
    current = await RosterStore(pool).current()
    settings = current.notices if current is not None else NoticeSettings()
    roster = current.roster if current is not None else None
    cards = []
    for row in rows:
        ref = refs.get(row.session_id)
        ladder = tuple(trails.get(row.key, ()))
        cards.append(NoticeCard(
            row=row, slug=slug(row.key), title=titles.get(row.key, row.kind),
            client_ref=ref, client_name=names.get(ref) if ref else None,
            session_trail=tuple(trails.get(row.session_id, ())), ladder=ladder,
            asked=asked(NoticeKind(row.kind)) if row.kind in ("alert", "task")
            else "act on it",
            next_rung=next_rung(row, ladder, settings, roster, now,
                                time_scale=app.settings.time_scale)))
    return cards


def next_rung(row: NoticeRow, ladder: Sequence[AuditEvent], settings: NoticeSettings,
              roster: Roster | None, now: datetime, *, time_scale: float) -> NextRung | None:
    """Where an open notice goes next and when (None once acknowledged or run out)."""
    if row.state != "open":
        return None
    policy = next((p for p in settings.policies if p.name == row.policy), None)
    if policy is None:
        return None
    step, since = 1, row.opened_at
    for event in ladder:
        if upcast(event.event_type) is AuditEventType.NOTICE_CLIMBED:
            step, since = int(str(event.data.get("step", step))), event.occurred_at
    if not 1 <= step <= len(policy.steps):
        return None
    at = since + timedelta(minutes=policy.steps[step - 1].minutes / time_scale)
    if step == len(policy.steps):
        return NextRung(at, "exhausted")
    target = policy.steps[step].notify
    who: tuple[str, ...] = ()
    if roster is not None:
        if target is Target.ON_CALL:
            who = tuple(c.id for c in on_call(roster, at))
        elif target is Target.SUPERVISOR:
            who = tuple(c.id for c in supervisors_for(roster, row.therapist_id, at))
        else:
            who = (row.therapist_id,)
    return NextRung(at, target.value, who)


async def _directory(pool: asyncpg.Pool, ref: str | None,
                     ) -> tuple[ClientRecord | None, tuple[ConsentRecord, ...]]:
    if ref is None:
        return None, ()
    directory = ClientDirectory(pool)
    client = await directory.get(ref)
    history = await directory.history(ref) if client is not None else []
    return client, tuple(sorted(history, key=lambda r: r.effective_at, reverse=True))


def _client_ref(trail: Sequence[AuditEvent]) -> str | None:
    for event in trail:
        if event.event_type.value == "scheduled":
            ref = event.data.get("client_ref")
            return ref if isinstance(ref, str) else None
    return None


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
        return notice_cases.NoticeResult(ResultKind.BAD_INPUT,
                                         describe(error, subject="resolution"), notice_key)
    return await notice_cases.resolve(await app.temporal(), await app.pool(), notice_key,
                                      resolution)


def _not_yours(notice_key: str, who: Viewer) -> notice_cases.NoticeResult:
    return notice_cases.NoticeResult(ResultKind.REFUSED,
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
    escalation: str = "not needed yet"
    """What the trail says about the emergency contact (called, blocked, uncertain)."""
    notices: str = "none"
    """Where the session's notices stand (open, acknowledged, run out)."""


@dataclass(frozen=True)
class Board:
    """The practice board's lists."""

    active: dict[str, list[ActiveSession]] = field(default_factory=dict)
    overdue_notices: list[NoticeRow] = field(default_factory=list)
    no_shows_today: list[AuditEvent] = field(default_factory=list)
    problem: str | None = None
    on_call_now: tuple[str, ...] = ()
    """Who is on call now (staff ids)."""
    exhausted_at: dict[str, datetime] = field(default_factory=dict)
    """When each notice that ran out of steps did, by key."""
    unresolved_urgent: list[NoticeRow] = field(default_factory=list)
    """Urgent notices acknowledged but not yet resolved (someone is on it)."""
    blocked_today: list[AuditEvent] = field(default_factory=list)
    """Escalations blocked today (no consent, none on file): a clinician must decide."""
    closed_today: dict[str, int] = field(default_factory=dict)
    """Today's sessions closed, by outcome."""


async def board(app: Application, who: Viewer, now: datetime, *,
                record: bool = True) -> Board:
    """Sessions needing attention, notices past their policy or unresolved, today's figures.

    The view is logged unless `record` is False (a live refresh logs only what is new).
    """
    if record:
        await record_view(app, who, "board", None)
    pool = await app.pool()
    store = ConsoleStore(pool)
    zone = await practice_time_zone(app)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    current = await RosterStore(pool).current()
    settings = current.notices if current is not None else NoticeSettings()
    roster = current.roster if current is not None else None
    every = await NoticeStore(pool).listed(unfinished_only=False, limit=500)
    unfinished = [row for row in every if row.state in ("open", "exhausted")]
    overdue = [row for row in unfinished
               if past_policy(row, settings, now, time_scale=app.settings.time_scale)]
    trails = await store.trails([row.key for row in overdue if row.state == "exhausted"])
    exhausted_at = {key: e.occurred_at for key, trail in trails.items() for e in trail
                    if e.event_type.value == "notice_exhausted"}
    closed: dict[str, int] = {}
    for row in await store.attendance_since(midnight):
        closed[row["outcome"]] = closed.get(row["outcome"], 0) + 1
    lists = {
        "overdue_notices": overdue,
        "no_shows_today": await store.no_shows_since(midnight),
        "on_call_now": tuple(c.id for c in on_call(roster, now)) if roster else (),
        "exhausted_at": exhausted_at,
        "unresolved_urgent": [row for row in every if row.state == "acknowledged"
                              and row.priority == "urgent"],
        "blocked_today": await store.notice_events_since(midnight, ["escalation_blocked"]),
        "closed_today": closed,
    }
    try:
        active = await _active_sessions(app)
    except (UnavailableError, RPCError) as error:
        return Board({}, problem=f"sessions by risk tier are unavailable: {error}",
                     **lists)  # type: ignore[arg-type]
    return Board(await _with_states(store, active, every), **lists)  # type: ignore[arg-type]


ESCALATION_WORDS = {"escalation_sent": "emergency contact called",
                    "escalation_blocked": "blocked: no consent or no contact",
                    "escalation_uncertain": "not known whether reached"}


async def _with_states(store: ConsoleStore, active: dict[str, list[ActiveSession]],
                       notices: Sequence[NoticeRow]) -> dict[str, list[ActiveSession]]:
    """Each active session with its escalation state and its notices' states."""
    ids = [s.session_id for sessions in active.values() for s in sessions]
    trails = await store.trails(ids) if ids else {}
    by_session: dict[str, list[str]] = {}
    for row in notices:
        by_session.setdefault(row.session_id, []).append(row.state)
    result: dict[str, list[ActiveSession]] = {}
    for tier, sessions in active.items():
        result[tier] = []
        for line in sessions:
            last = [e.event_type.value for e in trails.get(line.session_id, [])
                    if e.event_type.value in ESCALATION_WORDS]
            states = by_session.get(line.session_id, [])
            counted = ", ".join(f"{states.count(state)} {state}" for state in
                                ("exhausted", "open", "acknowledged", "resolved")
                                if state in states)
            result[tier].append(replace(
                line, escalation=ESCALATION_WORDS[last[-1]] if last else "not needed yet",
                notices=counted or "none"))
    return result


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


# -- sessions today, clients ------------------------------------------------------------------


async def sessions_today(app: Application, who: Viewer, now: datetime) -> list[SessionLine]:
    """Today's sessions (the practice's day): a therapist's own, or the practice's."""
    await record_view(app, who, "sessions today", None)
    zone = await practice_time_zone(app)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    store = ConsoleStore(await app.pool())
    mine = None if who.sees_practice else who.clinician_id
    return await store.sessions_between(midnight, midnight + timedelta(days=1),
                                        therapist_id=mine)


async def is_session(app: Application, text: str) -> bool:
    """Whether `text` is a session id with a trail (the search box takes one too)."""
    trail = await ConsoleStore(await app.pool()).trails([text])
    return bool(trail.get(text))


MAX_SEARCH = 64
"""Longer search text is cut (a name or a ref is never longer)."""


async def find_clients(app: Application, who: Viewer, text: str) -> list[ClientLine]:
    """Clients by first name or ref (a therapist finds only their own clients)."""
    text = text.strip()[:MAX_SEARCH]
    if not text:
        return []
    await record_view(app, who, "client search", None)
    mine = None if who.sees_practice else who.clinician_id
    return await ConsoleStore(await app.pool()).find_clients(text, therapist_id=mine)


@dataclass(frozen=True)
class ClientView:
    """Everything the client page shows."""

    ref: str
    record: ClientRecord | None
    consents: tuple[ConsentRecord, ...]
    sessions: tuple[SessionLine, ...]
    """Their sessions, oldest first (the last year)."""
    weeks: tuple[tuple[date, int, int], ...]
    """Per week (its Monday) over the last 12: sessions attended, missed."""
    cards: tuple[NoticeCard, ...]
    """Notices of their sessions nobody has resolved."""

    @property
    def first_name(self) -> str | None:
        """The directory's, else the bookings'."""
        if self.record is not None:
            return self.record.first_name
        return next((s.first_name for s in self.sessions if s.first_name), None)


CLIENT_WEEKS = 12
"""Weeks the client page's attendance chart covers."""


async def client_view(app: Application, who: Viewer, ref: str,
                      now: datetime) -> Result | ClientView:
    """The client page's data; refused unless the viewer sees one of the client's sessions."""
    pool = await app.pool()
    store = ConsoleStore(pool)
    therapists = await store.client_therapists(ref)
    record, consents = await _directory(pool, ref)
    if not therapists and record is None:
        return Result(ResultKind.NOT_FOUND, f"no client {ref}")
    if not (who.sees_practice or who.clinician_id in therapists):
        await store.record_access(clinician_id=who.clinician_id, page="client", session_id=None,
                                  allowed=False, client_ref=ref)
        return Result(ResultKind.REFUSED, f"client {ref} is not one of your clients")
    await store.record_access(clinician_id=who.clinician_id, page="client", session_id=None,
                              allowed=True, client_ref=ref)
    sessions = await store.sessions_between(now - timedelta(days=365), now + timedelta(days=365),
                                            client_ref=ref)
    zone = await practice_time_zone(app)
    notices = await store.client_notices(ref)
    return ClientView(ref=ref, record=record, consents=consents, sessions=tuple(sessions),
                      weeks=weekly_attendance(sessions, now, zone),
                      cards=tuple(await notice_cards(app, notices, now)))


def weekly_attendance(sessions: Sequence[SessionLine], now: datetime, zone: ZoneInfo,
                      weeks: int = CLIENT_WEEKS) -> tuple[tuple[date, int, int], ...]:
    """Attended and missed sessions per week (Monday first), the last `weeks` weeks."""
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    starts = [monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    counts = {start: [0, 0] for start in starts}
    for line in sessions:
        if line.outcome is None or line.outcome == "cancelled":
            continue
        day = line.start.astimezone(zone).date()
        week = day - timedelta(days=day.weekday())
        if week in counts:
            counts[week][1 if Outcome(line.outcome).is_no_show else 0] += 1
    return tuple((start, counts[start][0], counts[start][1]) for start in starts)


# -- measures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """A median and a 95th percentile, in seconds (None: no data)."""

    count: int
    median: float | None
    p95: float | None


def spread(values: Sequence[float]) -> Spread:
    """Median and p95 (nearest rank) of `values`."""
    if not values:
        return Spread(0, None, None)
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = (ordered[middle] if len(ordered) % 2
              else (ordered[middle - 1] + ordered[middle]) / 2)
    rank = max(1, -(-95 * len(ordered) // 100))  # ceil(0.95 n)
    return Spread(len(ordered), median, ordered[rank - 1])


@dataclass(frozen=True)
class Measures:
    """The supervisor's figures over the last weeks."""

    weeks: tuple[date, ...]
    """Mondays of the weeks covered, oldest first."""
    no_shows: dict[str, tuple[int, ...]]
    """No-shows per week, by therapist."""
    to_first_outreach: Spread
    """From the no-show to the first outreach step."""
    to_acknowledgment: Spread
    """From a notice's opening to its acknowledgment."""
    exhausted: tuple[int, ...]
    """Notices that ran out of steps, per week."""
    escalations: tuple[int, ...]
    """Emergency contacts called, per week."""
    blocked: tuple[int, ...]
    """Escalations blocked (no consent, none on file), per week."""
    outcomes: dict[str, int]
    """Closed sessions by outcome."""


MEASURE_WEEKS = 8
"""Weeks the measures page covers."""


async def measures(app: Application, who: Viewer, now: datetime,
                   weeks: int = MEASURE_WEEKS) -> Measures:
    """No-shows per week per therapist, times to outreach and acknowledgment, and the rest."""
    await record_view(app, who, "measures", None)
    zone = await practice_time_zone(app)
    today = now.astimezone(zone).date()
    mondays = tuple(today - timedelta(days=today.weekday()) - timedelta(weeks=n)
                    for n in range(weeks - 1, -1, -1))
    since = datetime.combine(mondays[0], datetime.min.time(), tzinfo=zone)
    store = ConsoleStore(await app.pool())

    def week_of(at: datetime) -> int | None:
        day = at.astimezone(zone).date()
        monday = day - timedelta(days=day.weekday())
        return mondays.index(monday) if monday in mondays else None

    no_shows: dict[str, list[int]] = {}
    outcomes: dict[str, int] = {}
    for row in await store.attendance_since(since):
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
        week = week_of(row["start_at"])
        if week is not None and Outcome(row["outcome"]).is_no_show:
            no_shows.setdefault(row["therapist_id"], [0] * weeks)[week] += 1
    events_ = await store.notice_events_since(since, [
        "notice_acknowledged", "notice_exhausted", "escalation_sent", "escalation_blocked"])
    per_week = {kind: [0] * weeks for kind in (
        "notice_exhausted", "escalation_sent", "escalation_blocked")}
    acknowledgment = []
    for event in events_:
        kind = event.event_type.value
        if kind == "notice_acknowledged":
            seconds = event.data.get("seconds_to_acknowledge")
            if isinstance(seconds, int):
                acknowledgment.append(float(seconds))
            continue
        week = week_of(event.occurred_at)
        if week is not None:
            per_week[kind][week] += 1
    return Measures(
        weeks=mondays, no_shows={k: tuple(v) for k, v in sorted(no_shows.items())},
        to_first_outreach=spread(await store.first_outreach_delays(since)),
        to_acknowledgment=spread(acknowledgment),
        exhausted=tuple(per_week["notice_exhausted"]),
        escalations=tuple(per_week["escalation_sent"]),
        blocked=tuple(per_week["escalation_blocked"]), outcomes=outcomes)


def measures_csv(figures: Measures) -> str:
    """The same figures as CSV: one row per figure, week and therapist."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["figure", "week", "therapist", "value"])
    for therapist, counts in figures.no_shows.items():
        for monday, count in zip(figures.weeks, counts, strict=True):
            writer.writerow(["no_shows", monday.isoformat(), therapist, count])
    for name, counts in (("notices_exhausted", figures.exhausted),
                         ("escalations_sent", figures.escalations),
                         ("escalations_blocked", figures.blocked)):
        for monday, count in zip(figures.weeks, counts, strict=True):
            writer.writerow([name, monday.isoformat(), "", count])
    for name, value in (("to_first_outreach", figures.to_first_outreach),
                        ("to_acknowledgment", figures.to_acknowledgment)):
        writer.writerow([f"{name}_median_seconds", "", "",
                         "" if value.median is None else round(value.median)])
        writer.writerow([f"{name}_p95_seconds", "", "",
                         "" if value.p95 is None else round(value.p95)])
        writer.writerow([f"{name}_count", "", "", value.count])
    for outcome_, count in sorted(figures.outcomes.items()):
        writer.writerow(["outcome", "", outcome_, count])
    return out.getvalue()
