"""Kept texts: a client's inbound text that could not reach its session at once.

A text reaches its session as a workflow update, which only a running worker takes. While
none runs (a deploy, a crashed worker, a worker waiting for PostgreSQL) or Temporal cannot
be reached, the text is kept in PostgreSQL and the provider is answered as if delivered:
Twilio does not retry an inbound message that got a 5xx, so a "call me" or a STOP
answered 503 would be lost. The deliverer (`text_deliverer`) hands kept texts to their
sessions later, under the same update id as the first try (`text-<message id>`), so a text
is applied once however often it is tried.

The sender's number and the text are sealed with the service's payload encryption before
they are stored, and erased when the text settles.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import BaseModel, ConfigDict
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from missed_session.application.clients import STORE_ERRORS
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.application.sessions import Sessions
from missed_session.codec.encryption import CodecError, EncryptionCodec
from missed_session.contracts.notices import NoticePlan, NoticeRequest, notice_workflow_id
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    NoticeKind,
    Priority,
    SessionBooking,
    TextReply,
    TherapistNotice,
)
from missed_session.store.audit import AuditStore
from missed_session.store.inbox import InboxStore
from missed_session.store.kept_texts import (
    RENEW_EVERY,
    InboundProvider,
    KeptText,
    KeptTextStore,
    Settlement,
)
from missed_session.store.notices import RosterStore
from missed_session.temporal import search_attributes
from missed_session.temporal.client import codec_for

log = structlog.get_logger(__name__)

SEALED_ENCODING = b"json/kept-text"
"""The encoding of a kept text's payload before it is sealed."""
MAX_BODY = 1600
"""The longest text a session is given (a long SMS)."""


class _Opened(BaseModel):
    """What a kept text holds once opened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone: str
    body: str


def update_id(message_id: str) -> str:
    """The workflow update id of a text: one per provider message, in every session."""
    return f"text-{message_id}"


def message_id_or_new(message_id: str | None) -> str:
    """The provider's id, or (a sender that gives none) one made now, before the first try.

    Made before the first try so that a try that timed out and a later delivery carry the
    same update id; a provider that sends no id cannot have its redeliveries recognised.
    """
    return message_id if message_id else f"local-{uuid.uuid4().hex}"


async def seal(codec: EncryptionCodec, phone: str, body: str) -> bytes:
    """The sender and the text, sealed with the active payload key (its id inside)."""
    plain = Payload(metadata={"encoding": SEALED_ENCODING},
                    data=_Opened(phone=phone, body=body).model_dump_json().encode())
    [sealed] = await codec.encode([plain])
    return bytes(sealed.SerializeToString())


async def unseal(codec: EncryptionCodec, sealed: bytes) -> tuple[str, str]:
    """The sender and the text; raises CodecError when the seal does not open."""
    payload = Payload()
    try:
        payload.ParseFromString(sealed)
    except Exception as error:  # protobuf's DecodeError: not a sealed payload at all
        msg = "a kept text is not a sealed payload"
        raise CodecError(msg) from error
    [plain] = await codec.decode([payload])
    if plain.metadata.get("encoding") != SEALED_ENCODING:
        msg = "a kept text was stored without its seal"
        raise CodecError(msg)
    opened = _Opened.model_validate_json(plain.data)
    return opened.phone, opened.body


@dataclass(frozen=True)
class Attempt:
    """What one try of a kept text did."""

    outcome: Settlement
    """PENDING: it waits for another try; anything else: it is settled."""
    error_type: str | None = None
    """For a pending text: what stood in the way (an error's type, never its message)."""


class KeptTexts:
    """Keeping texts and delivering kept ones, over the application's connections."""

    def __init__(self, app: Application, *, codec: EncryptionCodec | None = None) -> None:
        self._app = app
        self._codec = codec

    @property
    def codec(self) -> EncryptionCodec:
        """The payload encryption the texts are sealed with (read when first needed)."""
        if self._codec is None:
            self._codec = codec_for(self._app.settings)
        return self._codec

    @property
    def wait(self) -> timedelta:
        """How long a try waits for a session to take the text."""
        return timedelta(seconds=self._app.settings.inbound_text_wait_seconds)

    async def store(self) -> KeptTextStore:
        """The kept-text table; raises UnavailableError."""
        return KeptTextStore(await self._app.pool())

    async def keep(self, *, message_id: str, channel: InboundProvider, kind: str, phone: str,
                   body: str, sessions: dict[str, Result] | None) -> None:
        """Keep a text the first try could not deliver everywhere (None: no session lookup).

        `sessions` holds the first try's result per open session: those it reached, or that
        refused it or were gone, are recorded as such; the rest wait for the deliverer. An
        id kept already is left as it is (a provider's redelivery). Raises UnavailableError
        when PostgreSQL cannot take it.
        """
        outcomes = None if sessions is None else {
            session_id: _outcome(result) for session_id, result in sessions.items()}
        store = await self.store()
        try:
            await store.keep(message_id=message_id, channel=channel, kind=kind,
                             sealed=await seal(self.codec, phone, body), sessions=outcomes)
        except STORE_ERRORS as error:
            msg = f"cannot keep the text: the database failed ({type(error).__name__})"
            raise UnavailableError(msg) from None

    async def is_kept(self, message_id: str) -> bool:
        """Whether a text with this provider id is kept already; raises UnavailableError."""
        store = await self.store()
        try:
            return await store.is_kept(message_id)
        except STORE_ERRORS as error:
            msg = f"cannot read the kept texts: the database failed ({type(error).__name__})"
            raise UnavailableError(msg) from None

    async def overview(self, *, pending_only: bool = True) -> Result:
        """For operators: kept texts by outcome and the texts themselves (no number, no text).

        `data` holds `counts` (outcome -> texts) and `texts` (oldest first).
        """
        try:
            store = await self.store()
            counts = await store.counts()
            rows = await store.rows(pending_only=pending_only)
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error))
        except STORE_ERRORS as error:
            return Result(ResultKind.UNAVAILABLE,
                          f"the kept texts cannot be read ({type(error).__name__})")
        texts = [{"message_id": row.message_id, "channel": row.channel, "kind": row.kind,
                  "state": row.state, "outcome": row.outcome, "attempts": row.attempts,
                  "last_error": row.last_error, "received_at": row.received_at.isoformat(),
                  "next_attempt_at": row.next_attempt_at.isoformat(), "sessions": row.sessions}
                 for row in rows]
        return Result(ResultKind.APPLIED, f"{counts[Settlement.PENDING]} kept text(s) waiting",
                      data={"counts": counts, "texts": texts})

    async def retry_now(self) -> Result:
        """Make every waiting text due at once (after an outage ends); the deliverer tries."""
        try:
            count = await (await self.store()).retry_now()
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error))
        except STORE_ERRORS as error:
            return Result(ResultKind.UNAVAILABLE,
                          f"the kept texts cannot be changed ({type(error).__name__})")
        return Result(ResultKind.APPLIED, f"{count} kept text(s) due now")

    async def deliver(self, text: KeptText) -> Attempt:
        """One try of a claimed text in every session it has not yet reached.

        The claim is renewed while the try runs (a dead deliverer's lapses within
        `CLAIM_LEASE`). A session that moved on before taking the text (closed, or refused
        it) does not drop it: its therapist is given it as a late client response
        (`late_response`). Raises the store's errors (PostgreSQL down): the deliverer waits
        and tries again.
        """
        store = await self.store()
        async with _claim_held(store, text.message_id):
            return await self._deliver(store, text)

    async def _deliver(self, store: KeptTextStore, text: KeptText) -> Attempt:
        try:
            phone, body = await unseal(self.codec, text.sealed)
        except CodecError:
            return Attempt(await store.settle(text.message_id, Settlement.UNREADABLE))
        try:
            sessions = await self._app.sessions()
            if not text.sessions_known:
                found = await sessions.open_sessions(phone, wait=self.wait * 3)
                await store.add_sessions(text.message_id, found)
        except (UnavailableError, RPCError, TimeoutError) as error:
            return Attempt(Settlement.PENDING, type(error).__name__)
        reply = TextReply(body=body[:MAX_BODY])
        for session_id in await store.pending_sessions(text.message_id):
            result = await sessions.deliver_text(session_id, reply,
                                                 update_id=update_id(text.message_id),
                                                 wait=self.wait)
            outcome = _outcome(result)
            if outcome[0] is Settlement.PENDING:
                return Attempt(Settlement.PENDING, "NoAnswer")
            if outcome[0] is Settlement.SESSION_GONE:
                try:
                    late = await self._late_response(sessions, text, session_id)
                except (UnavailableError, RPCError, TimeoutError) as error:
                    return Attempt(Settlement.PENDING, type(error).__name__)
                if late is not None:
                    outcome = (Settlement.LATE_RESPONSE, late.key)
            await store.settle_session(text.message_id, session_id, *outcome)
        return Attempt(await store.settle(text.message_id))

    async def _late_response(self, sessions: Sessions, text: KeptText,
                             session_id: str) -> TherapistNotice | None:
        """Give the therapist a text its closed session never took; None: no such session.

        A notice (`late_response_notice`: the notice's row, and with a roster on file the
        notice workflow that climbs until someone acknowledges it). Its key is the session's
        and the text's, so a retry raises it once.
        """
        booking = await sessions.booking(session_id)
        if booking is None:
            return None
        pool = await self._app.pool()
        store = AuditStore(pool)
        try:
            trail = await store.trail(session_id)
        except STORE_ERRORS as error:
            msg = f"cannot read the trail ({type(error).__name__})"
            raise UnavailableError(msg) from None
        notice = late_response_notice(booking, trail, text)
        try:
            await InboxStore(pool).add_notice(notice)
            current = await RosterStore(pool).current()
        except STORE_ERRORS as error:
            msg = f"cannot record the notice ({type(error).__name__})"
            raise UnavailableError(msg) from None
        if current is not None and current.roster is not None:
            rules = current.notices
            plan = NoticePlan(policy=rules.policy_for(notice.priority, booking.risk_tier),
                              include_first_name=rules.include_first_name,
                              ack_code_hours=rules.ack_code_hours,
                              roster_version=current.version)
            client = await self._app.temporal()
            with contextlib.suppress(WorkflowAlreadyStartedError):  # a retry: raised once
                await client.start_workflow(
                    "NoticeWorkflow",
                    NoticeRequest.about(booking, notice, plan),
                    id=notice_workflow_id(notice.key),
                    task_queue=self._app.settings.task_queue,
                    search_attributes=search_attributes.notice_initial(
                        priority=notice.priority.value, opened=datetime.now(UTC)))
        log.warning("kept_text_late_response", message_id=text.message_id,
                    session_id=session_id, notice=notice.key,
                    urgent=notice.priority is Priority.URGENT)
        return notice


def late_response_notice(booking: SessionBooking, trail: Sequence[AuditEvent],
                         text: KeptText) -> TherapistNotice:
    """The therapist's notice of a kept text its session closed without taking (pure).

    Urgent, a task, when the session contacted the emergency contact after the text was kept
    (the client was writing meanwhile); otherwise an alert. No number, no text: the client
    ref only, as in every notice.
    """
    since = text.received_at
    escalated = any(event.event_type is AuditEventType.ESCALATION_SENT
                    and (since is None or event.occurred_at >= since) for event in trail)
    what = ("the emergency contact was contacted while it waited" if escalated
            else "the session had closed")
    return TherapistNotice(
        key=f"{booking.session_id}/late-text-{text.message_id}"[:200],
        session_id=booking.session_id, therapist_id=booking.therapist_id,
        kind=NoticeKind.TASK if escalated else NoticeKind.ALERT,
        priority=Priority.URGENT if escalated else Priority.ROUTINE,
        title=f"The client texted back and the text could not reach the session in time: "
              f"{what}; contact the client (client {booking.client.ref})",
    )


@contextlib.asynccontextmanager
async def _claim_held(store: KeptTextStore, message_id: str) -> AsyncIterator[None]:
    """Renew the claim on a text every `RENEW_EVERY` while the block runs."""
    async def renew() -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY.total_seconds())
            try:
                if not await store.renew(message_id):
                    return
            except Exception as error:  # PostgreSQL down: the try itself will find out
                log.warning("kept_text_claim_not_renewed", message_id=message_id,
                            error=type(error).__name__)

    task = asyncio.create_task(renew(), name=f"kept-text-claim-{message_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _outcome(result: Result) -> tuple[Settlement, str | None]:
    """A delivery's result as a kept text's outcome in that session, with the reason."""
    if result.ok:
        return Settlement.DELIVERED, None
    if result.kind is ResultKind.REFUSED:
        return Settlement.REFUSED, result.message
    if result.kind is ResultKind.NOT_FOUND:
        return Settlement.SESSION_GONE, result.message
    return Settlement.PENDING, None

