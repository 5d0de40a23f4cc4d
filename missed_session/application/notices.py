"""Use cases for notices to clinicians: acknowledge, resolve, reply by SMS, follow a link.

Every entry point (the CLI, the inbound SMS route, the HTTP endpoint a signed link opens,
the console) calls these; they return a `NoticeResult` whose `kind` the entry point maps to
an exit code or HTTP status. A refusal (unknown, expired or used code, a number that is not
the notified clinician's, a bad link) is recorded in `notice_refusals` and changes nothing
else: the notice workflow's update validator refused it before anything was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from missed_session.application.results import ResultKind
from missed_session.config import Settings
from missed_session.contracts.notices import notice_workflow_id
from missed_session.domain import notices
from missed_session.domain.events import EventDetails, read
from missed_session.domain.models import AuditEvent, DecisionKind
from missed_session.domain.notices import Acknowledgment, AckVia, Resolution
from missed_session.domain.practice import PracticeFileError
from missed_session.practice_file import load_roster_file
from missed_session.store.database import database_url, open_pool
from missed_session.store.notices import (
    NoticeRow,
    NoticeStore,
    RosterStore,
    RosterVersion,
    notice_trails,
)
from missed_session.temporal.client import connect


@dataclass(frozen=True)
class NoticeResult:
    """The outcome of one use case."""

    kind: ResultKind
    """Applied, refused, not found, bad input, not a clinician."""
    message: str
    """One line for the caller."""
    notice_key: str | None = None
    """The notice it concerned, when known."""


async def acknowledge(client: Client, pool: asyncpg.Pool, notice_key: str,
                      ack: Acknowledgment) -> NoticeResult:
    """Acknowledge a notice: the climb stops (or the refusal is recorded)."""
    handle = client.get_workflow_handle(notice_workflow_id(notice_key))
    store = NoticeStore(pool)
    try:
        message = await handle.execute_update("acknowledge", ack, result_type=str)
    except WorkflowUpdateFailedError as error:
        reason = _reason(error)
        await store.refused(notice_key=notice_key, via=ack.via.value,
                            clinician_id=ack.clinician_id, reason=reason)
        return NoticeResult(ResultKind.REFUSED, reason, notice_key)
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        await store.refused(notice_key=None, via=ack.via.value, clinician_id=ack.clinician_id,
                            reason="unknown notice")
        return NoticeResult(ResultKind.NOT_FOUND, f"no notice {notice_key!r}")
    return NoticeResult(ResultKind.APPLIED, message, notice_key)


async def unacknowledged_sent_to(pool: asyncpg.Pool, session_id: str,
                                 clinician_id: str) -> list[str]:
    """The session's notices sent to the clinician that nobody has acknowledged yet."""
    return await NoticeStore(pool).unacknowledged_sent_to(session_id, clinician_id)


async def acknowledge_on_decision(client: Client, notice_keys: Sequence[str],
                                  clinician_id: str,
                                  kind: DecisionKind | None = None) -> list[str]:
    """A clinician decided on the notices' session: those notices are acknowledged by them.

    `notice_keys`: the session's notices sent to them and unacknowledged *before* the
    decision (`unacknowledged_sent_to`), so a task the decision itself raised (an
    escalation still blocked) stays open for them to see. One update per notice, with an
    id per clinician, so a retried decision acknowledges nothing twice; a notice someone
    acknowledged meanwhile refuses it (nothing is recorded: nobody asked). Returns the keys
    acknowledged now.

    `kind`: the decision. One that ends the session's reason for a notice (mark safe, stand
    down: `notices.decision_reason`) leaves that notice alone: the session resolves it with
    the reason, which also tells everyone its ladder had told; acknowledging it here first
    would close it for the decider alone and leave the on-call clinician already paged
    uninformed.
    """
    acknowledged = []
    ack = Acknowledgment(via=AckVia.DECISION, clinician_id=clinician_id)
    ending = notices.decision_reason(kind) if kind is not None else None
    for key in notice_keys:
        if ending is not None and notices.ends(key, ending):
            continue
        handle = client.get_workflow_handle(notice_workflow_id(key))
        try:
            await handle.execute_update("acknowledge", ack, result_type=str,
                                        id=f"acknowledge-on-decision-{clinician_id}")
        except WorkflowUpdateFailedError:
            continue
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            continue
        acknowledged.append(key)
    return acknowledged


async def resolve(client: Client, pool: asyncpg.Pool, notice_key: str,
                  resolution: Resolution) -> NoticeResult:
    """Close a notice with an outcome (acknowledging it if nobody had)."""
    handle = client.get_workflow_handle(notice_workflow_id(notice_key))
    try:
        message = await handle.execute_update("resolve", resolution, result_type=str)
    except WorkflowUpdateFailedError as error:
        reason = _reason(error)
        await NoticeStore(pool).refused(notice_key=notice_key, via=resolution.via.value,
                                        clinician_id=resolution.clinician_id, reason=reason)
        return NoticeResult(ResultKind.REFUSED, reason, notice_key)
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        return NoticeResult(ResultKind.NOT_FOUND, f"no notice {notice_key!r}")
    return NoticeResult(ResultKind.APPLIED, message, notice_key)


async def sms_reply(client: Client, pool: asyncpg.Pool, from_number: str,
                    body: str) -> NoticeResult:
    """An inbound SMS: a clinician's `1` or `ACK <code>` acknowledges their notice.

    For the inbound SMS route: `NOT_A_CLINICIAN` means the sender is not on the roster
    and the text is no acknowledgment (hand it to the client's path); a text that is an
    acknowledgment but cannot be matched is refused and recorded.
    """
    is_ack, code = notices.parse_sms(body)
    current = await RosterStore(pool).current()
    clinician = (current.roster.by_number(from_number)
                 if current is not None and current.roster is not None else None)
    store = NoticeStore(pool)
    if clinician is None:
        if not is_ack or code is None:
            return NoticeResult(ResultKind.NOT_A_CLINICIAN, "not a clinician's number")
        key = await store.by_code(notices.code_hash(code))
        reason = "the reply did not come from the notified clinician's number"
        await store.refused(notice_key=key, via=AckVia.SMS.value, clinician_id=None,
                            reason=reason)
        return NoticeResult(ResultKind.REFUSED, reason, key)
    if not is_ack:
        return NoticeResult(ResultKind.BAD_INPUT,
                            "reply 1 or ACK <code> to acknowledge a notice")
    if code is not None:
        key = await store.by_code(notices.code_hash(code))
        if key is None:
            await store.refused(notice_key=None, via=AckVia.SMS.value,
                                clinician_id=clinician.id, reason="unknown code")
            return NoticeResult(ResultKind.REFUSED, "unknown code")
    else:
        key = await store.latest_unacknowledged_for(clinician.id)
        if key is None:
            await store.refused(notice_key=None, via=AckVia.SMS.value,
                                clinician_id=clinician.id,
                                reason="no unacknowledged notice was sent to this clinician")
            return NoticeResult(ResultKind.REFUSED,
                                "no unacknowledged notice was sent to you")
    return await acknowledge(client, pool, key, Acknowledgment(
        via=AckVia.SMS, code=code, clinician_id=clinician.id, from_number=from_number,
    ))


async def follow_link(client: Client, pool: asyncpg.Pool, secret: bytes, *, notice_key: str,
                      clinician_id: str, expires: int, signature: str,
                      now: datetime) -> NoticeResult:
    """A clinician opened their signed link: it acknowledges for them."""
    problem = notices.link_problem(secret, notice_key, clinician_id, expires, signature,
                                   now=now)
    if problem is not None:
        await NoticeStore(pool).refused(notice_key=notice_key, via=AckVia.LINK.value,
                                        clinician_id=None, reason=problem)
        return NoticeResult(ResultKind.REFUSED, problem, notice_key)
    return await acknowledge(client, pool, notice_key,
                             Acknowledgment(via=AckVia.LINK, clinician_id=clinician_id))


async def load_roster(pool: asyncpg.Pool, path: Path) -> NoticeResult:
    """Load the practice file's roster and notice rules as the current roster."""
    try:
        loaded = load_roster_file(path)
    except PracticeFileError as error:
        return NoticeResult(ResultKind.BAD_INPUT, str(error))
    if loaded.roster is None:
        return NoticeResult(ResultKind.BAD_INPUT, f"{path}: roster: the file has no [roster]")
    version = await RosterStore(pool).load(loaded.roster, loaded.notices, str(path))
    lines = [f"roster version {version} loaded: {len(loaded.roster.clinicians)} clinicians, "
             f"{len(loaded.roster.on_call)} on-call shifts, {len(loaded.notices.policies)} "
             "notice policies", *(f"warning: {w}" for w in loaded.warnings)]
    return NoticeResult(ResultKind.APPLIED, "\n".join(lines))


async def list_notices(pool: asyncpg.Pool, *, everything: bool = False) -> list[NoticeRow]:
    """Notices nobody has acknowledged (or all), newest first."""
    return await NoticeStore(pool).listed(unfinished_only=not everything)


async def notice_trail(pool: asyncpg.Pool, notice_key: str) -> list[EventDetails]:
    """A notice's own audit trail, typed."""
    session_id = notice_key.split("/", 1)[0]
    trails = await notice_trails(pool, session_id)
    return [read(event) for event in trails.get(notice_key, [])]


class NoticeDesk:
    """The notice and roster use cases for a one-shot command (`starter.py notices ...`).

    Opens a small pool of its own on entry and connects to Temporal only for the verbs that
    reach a notice's workflow (acknowledge, resolve, SMS reply); connection failures
    propagate (the command reports them as "could not be carried out").
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._client: Client | None = None

    async def __aenter__(self) -> NoticeDesk:
        self._pool = await open_pool(database_url(self._settings), min_size=1, max_size=2)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def _open_pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "use NoticeDesk as an async context manager"
        return self._pool

    async def _temporal(self) -> Client:
        if self._client is None:
            self._client = await connect(self._settings)
        return self._client

    async def load_roster(self, path: Path) -> NoticeResult:
        """Load the practice file's roster and notice rules as the current roster."""
        return await load_roster(self._open_pool, path)

    async def current_roster(self) -> RosterVersion | None:
        """The roster in force, if one was loaded."""
        return await RosterStore(self._open_pool).current()

    async def list_notices(self, *, everything: bool = False) -> list[NoticeRow]:
        """Notices nobody has acknowledged (or all), newest first."""
        return await list_notices(self._open_pool, everything=everything)

    async def notice_events(self, row: NoticeRow) -> list[AuditEvent]:
        """A notice's own audit trail, in order."""
        return (await notice_trails(self._open_pool, row.session_id)).get(row.key, [])

    async def acknowledge(self, notice_key: str, ack: Acknowledgment) -> NoticeResult:
        """Acknowledge a notice: the climb stops (or the refusal is recorded)."""
        return await acknowledge(await self._temporal(), self._open_pool, notice_key, ack)

    async def resolve(self, notice_key: str, resolution: Resolution) -> NoticeResult:
        """Close a notice with an outcome."""
        return await resolve(await self._temporal(), self._open_pool, notice_key, resolution)

    async def sms_reply(self, from_number: str, body: str) -> NoticeResult:
        """A clinician's SMS reply."""
        return await sms_reply(await self._temporal(), self._open_pool, from_number, body)


def _reason(error: WorkflowUpdateFailedError) -> str:
    cause = error.cause
    return str(getattr(cause, "message", None) or cause or error)
