"""A text from a phone, whichever provider carried it: acknowledgment, opt-out, HELP, reply.

A clinician on the roster who answers a notice (`1`, `ACK <code>`) acknowledges it
(`application.notices.sms_reply`); that is asked first, since a clinician's number is no
client's. Any other sender is matched by phone number to the client's open sessions (every
client ref booked with that number); a reply with no open session goes to the client's
running caring-contacts series, if any (`application.caring_replies`: a notice to the
therapist). An opt-out keyword opts the number out in each of them; HELP is
answered with neutral help text and touches no session; anything else is the client's
response to the open sessions, where the protocol decides whether it counts.
"""

from __future__ import annotations

import asyncio
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import asyncpg
import structlog
from temporalio.service import RPCError

from missed_session.application import caring_replies, notices
from missed_session.application.clients import STORE_ERRORS
from missed_session.application.kept_texts import (
    MAX_BODY,
    KeptTexts,
    message_id_or_new,
    update_id,
)
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.application.sessions import KEPT_FOR
from missed_session.application.updates import send_update
from missed_session.domain import messages
from missed_session.domain import notices as notices_rules
from missed_session.domain.models import TextReply, workflow_id_for
from missed_session.store.kept_texts import InboundProvider
from missed_session.store.notices import RosterStore

log = structlog.get_logger(__name__)

STORE_PATIENCE = timedelta(seconds=2)
"""How long a text waits on PostgreSQL (the roster, the kept texts) before it goes on
without it: a provider waits a few seconds for the answer, and Twilio does not retry."""

HELP_KEYWORDS = frozenset({"HELP", "INFO"})
"""The carriers' help keywords (CTIA): answered with the help text, never a response."""


class TextKind(StrEnum):
    """What an inbound text is."""

    ACKNOWLEDGMENT = "acknowledgment"
    """A clinician's reply to a notice (accepted or refused: recorded either way)."""
    OPT_OUT = "opt_out"
    HELP = "help"
    RESPONSE = "response"


REPLACEMENT = "\ufffd"
"""What a neutralised character becomes: visible, and read as nothing else."""
INVISIBLE_MARKS = frozenset(
    "\u200e\u200f\u061c"  # LRM, RLM, ALM
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
)
"""Bidi marks and controls: they make a text read differently from what it holds."""
KEPT_CONTROLS = frozenset("\n\r\t")
"""Controls a text keeps: line breaks and tabs are part of what people write."""
LONGEST_ACCEPTED = 16_000
"""The longest body a route accepts: ten times a carrier's longest text, so nothing a
carrier sends is refused; what a session is given is cut to `MAX_BODY`."""


def _unsafe(char: str) -> bool:
    category = unicodedata.category(char)
    return char not in KEPT_CONTROLS and (
        category in {"Cc", "Cs"} or char in INVISIBLE_MARKS)


def neutralised(body: str) -> str:
    """The text as stored and given to sessions (pure).

    Cut to `MAX_BODY`; every control character (NUL, escape, C1), lone surrogate and bidi
    mark replaced by U+FFFD. A carrier delivers whatever a phone sent; a session's text
    must be printable (the trail's `FreeText`, and PostgreSQL cannot store NUL), so rather
    than refuse the client's words the unreadable characters are made visible.
    """
    return "".join(REPLACEMENT if _unsafe(char) else char for char in body[:MAX_BODY])


def _for_keywords(body: str) -> str:
    """The text with its unreadable characters dropped, for reading keywords (STOP)."""
    return "".join(char for char in body if not _unsafe(char) and char != REPLACEMENT)


def classify(body: str) -> TextKind:
    """What `body` asks for (pure; the opt-out rule is the protocol's own).

    Invisible characters do not hide a keyword: `STOP` with a bidi mark is still STOP.
    """
    readable = _for_keywords(body)
    if messages.is_opt_out(readable):
        return TextKind.OPT_OUT
    if readable.strip().strip(".!?").upper() in HELP_KEYWORDS:
        return TextKind.HELP
    return TextKind.RESPONSE


async def _acknowledgment(app: Application, phone: str, body: str) -> InboundAnswer | None:
    """A roster clinician's reply to a notice, carried out; None when the sender is none.

    Without Temporal a client's text still goes on (to be kept); a clinician's, or anything
    that reads as an acknowledgment, is unavailable: a notice's answer is not kept.
    """
    is_ack = notices_rules.parse_sms(body)[0]
    clinician = await _roster_clinician(app, phone)
    if clinician is None and is_ack:  # an acknowledgment is not kept: the clinician retries
        return InboundAnswer(TextKind.ACKNOWLEDGMENT, Result(
            ResultKind.UNAVAILABLE, "the roster cannot be read (PostgreSQL unavailable)"))
    if not (clinician or is_ack):  # a client's text (with PostgreSQL down, too): go on
        return None
    try:
        answer = await notices.sms_reply(await app.temporal(), await app.pool(), phone, body)
    except UnavailableError as error:
        return InboundAnswer(TextKind.ACKNOWLEDGMENT, Result(ResultKind.UNAVAILABLE, str(error)))
    if answer.kind is ResultKind.NOT_A_CLINICIAN:
        return None
    return InboundAnswer(TextKind.ACKNOWLEDGMENT,
                         Result(ResultKind(answer.kind.value), answer.message))


async def _roster_clinician(app: Application, phone: str) -> bool | None:
    """Whether the number is a roster clinician's; None when PostgreSQL cannot say in time."""
    try:
        async with asyncio.timeout(STORE_PATIENCE.total_seconds()):
            return await _from_clinician(await app.pool(), phone)
    except UnavailableError:
        return None
    except STORE_ERRORS:
        return None


async def _from_clinician(pool: asyncpg.Pool, phone: str) -> bool:
    """Whether the number is a clinician's on the current roster."""
    current = await RosterStore(pool).current()
    return (current is not None and current.roster is not None
            and current.roster.by_number(phone) is not None)


def help_text(sender_name: str, callback_number: str) -> str:
    """The answer to HELP: who is writing and how to stop, and nothing clinical."""
    return messages.ensure_discreet(
        f"{sender_name}: for help call {callback_number}. Reply STOP to stop texts.")


@dataclass(frozen=True)
class InboundAnswer:
    """What an inbound text did, and the text to answer the sender with (if any)."""

    kind: TextKind
    result: Result
    reply: str | None = None
    sessions: tuple[str, ...] = ()
    kept: bool = False
    """The text could not reach (every one of) its sessions now and is kept in PostgreSQL:
    the deliverer hands it over once a worker takes it. Answer the provider as delivered."""


async def receive_text(app: Application, *, phone: str, body: str, message_id: str | None,
                       channel: InboundProvider = InboundProvider.WEBHOOK) -> InboundAnswer:
    """Deliver a text from `phone`: to a clinician's notice, or to the client's open sessions.

    A client's text that no session takes within the bound (no worker running, Temporal
    unreachable) is kept and delivered later (`kept_texts`); only PostgreSQL being down
    leaves it unavailable, since then nothing can keep it.

    Any text a carrier can send is taken (empty, 1,600 characters, emoji, NUL, bidi
    marks): it is `neutralised` before anything reads, keeps or delivers it, and a STOP
    keyword is read with invisible characters dropped, so an opt-out is never missed.
    """
    kind = classify(body)
    body = neutralised(body)
    if kind is TextKind.OPT_OUT:
        body = _for_keywords(body)  # the session reads STOP itself: give it the keyword
    acknowledgment = await _acknowledgment(app, phone, body)
    if acknowledgment is not None:
        return acknowledgment
    if kind is TextKind.HELP:
        settings = app.settings
        return InboundAnswer(kind, Result(ResultKind.APPLIED, "help text sent"),
                             reply=help_text(settings.sender_name, settings.callback_number))
    kept_texts = KeptTexts(app)
    redelivered = await _already_kept(kept_texts, kind, message_id)
    if redelivered is not None:
        return redelivered
    recorded = await record_keyword(app, phone=phone, body=body, kind=kind)
    if recorded is not None and not recorded.ok:
        return InboundAnswer(kind, recorded)  # a STOP must not be lost: the sender retries
    message_id = message_id_or_new(message_id)
    first = await _to_open_sessions(app, kind, phone, body, message_id)
    if not first.kept:
        return first.inbound
    try:
        async with asyncio.timeout(STORE_PATIENCE.total_seconds()):
            await kept_texts.keep(message_id=message_id, channel=channel, kind=kind.value,
                                  phone=phone, body=body,
                                  sessions=None if first.sessions is None else first.tries)
    except (UnavailableError, TimeoutError) as error:
        if not _keep_in_flight(app, first, message_id, body):
            first = _FirstTry(InboundAnswer(kind, Result(ResultKind.UNAVAILABLE, str(error))),
                              first.sessions, first.tries)
        else:
            log.warning("inbound_text_kept_in_flight", message_id=message_id,
                        kind=kind.value, reason=type(error).__name__)
    else:
        log.warning("inbound_text_kept", message_id=message_id, kind=kind.value,
                    reason=first.why)
    return first.inbound


async def _already_kept(kept_texts: KeptTexts, kind: TextKind,
                        message_id: str | None) -> InboundAnswer | None:
    """A provider's redelivery of a kept text: the same message, kept once."""
    if message_id is None:
        return None
    try:
        async with asyncio.timeout(STORE_PATIENCE.total_seconds()):
            if not await kept_texts.is_kept(message_id):
                return None
    except (UnavailableError, TimeoutError):
        return None  # not known: tried again under the same update id, applied once
    return InboundAnswer(kind, Result(
        ResultKind.UNAVAILABLE, "already kept: delivered once a worker takes it"), kept=True)


def _keep_in_flight(app: Application, first: _FirstTry, message_id: str, body: str) -> bool:
    """PostgreSQL cannot keep the text: go on sending it from this process instead.

    Only where the sessions are known (Temporal answered the lookup) and the process keeps
    messages in flight (the HTTP API); the text is then lost only if this process dies
    before its sessions take it (while PostgreSQL is down as well).
    """
    in_flight = app.in_flight
    client = app.temporal_client
    if in_flight is None or client is None or first.sessions is None:
        return False
    reply = TextReply(body=body[:MAX_BODY])
    for session_id, result in first.tries.items():
        if result.kind is ResultKind.UNAVAILABLE:
            in_flight.keep(session_id, "text_reply", send_update(
                client, workflow_id_for(session_id), "text_reply", reply,
                update_id=update_id(message_id), wait=KEPT_FOR))
    return True


@dataclass(frozen=True)
class _FirstTry:
    """What the first try of a client's text did, before it may be kept."""

    inbound: InboundAnswer
    sessions: tuple[str, ...] | None
    """The open sessions found (None: they could not be looked up)."""
    tries: dict[str, Result]
    """Each session's result."""
    why: str | None = None
    """For a text to keep: what stood in the way (no number, no text)."""

    @property
    def kept(self) -> bool:
        return self.inbound.kept


def _to_keep(kind: TextKind, why: str, sessions: tuple[str, ...] | None = None,
             tries: dict[str, Result] | None = None) -> _FirstTry:
    accepted = tuple(s for s, r in (tries or {}).items() if r.ok)
    inbound = InboundAnswer(kind, Result(
        ResultKind.UNAVAILABLE, "kept: the text reaches its session(s) once a worker takes it"),
        sessions=accepted, kept=True)
    return _FirstTry(inbound, sessions, tries or {}, why)


async def _to_open_sessions(app: Application, kind: TextKind, phone: str, body: str,
                            message_id: str) -> _FirstTry:
    """An opt-out or a reply, to every open session of the client(s) using `phone`."""
    wait = timedelta(seconds=app.settings.inbound_text_wait_seconds)
    try:
        sessions = await app.sessions()
        session_ids = await sessions.open_sessions(phone, wait=wait)
    except UnavailableError:
        return _to_keep(kind, "TemporalUnavailable")
    except (RPCError, TimeoutError) as error:  # visibility unavailable, or too slow
        return _to_keep(kind, type(error).__name__)
    if not session_ids:
        series = await _to_caring_series(app, kind, phone, body, message_id, wait)
        return _FirstTry(InboundAnswer(kind, series or Result(
            ResultKind.NOT_FOUND, "no open session for the sender's number")), (), {})
    reply = TextReply(body=body[:MAX_BODY])
    results = await asyncio.gather(*(  # at once: the provider waits for the answer
        sessions.deliver_text(session_id, reply, update_id=update_id(message_id), wait=wait)
        for session_id in session_ids))
    tries = dict(zip(session_ids, results, strict=True))
    if any(result.kind is ResultKind.UNAVAILABLE for result in tries.values()):
        return _to_keep(kind, "NoAnswer", tuple(session_ids), tries)
    accepted = tuple(s for s, r in tries.items() if r.ok)
    if accepted:
        return _FirstTry(InboundAnswer(kind, Result(
            ResultKind.APPLIED, f"{kind.value} delivered to {len(accepted)} open session(s)"),
            sessions=accepted), tuple(session_ids), tries)
    return _FirstTry(InboundAnswer(kind, Result(
        ResultKind.REFUSED, "; ".join(r.message for r in tries.values())), sessions=()),
        tuple(session_ids), tries)


async def _to_caring_series(app: Application, kind: TextKind, phone: str, body: str,
                            message_id: str, wait: timedelta) -> Result | None:
    """A reply with no open session: to the client's running caring series (a notice)."""
    if kind is not TextKind.RESPONSE:
        return None  # a STOP is the number's consent record; each series reads it
    try:
        return await caring_replies.reply_to_series(
            await app.temporal(), await app.pool(), phone=phone, body=body,
            message_id=message_id, wait=wait)
    except UnavailableError as error:
        return Result(ResultKind.UNAVAILABLE, f"caring series unreachable: {error}")
    except STORE_ERRORS as error:
        return Result(ResultKind.UNAVAILABLE,
                      f"caring series unreachable: {type(error).__name__}")


START_KEYWORDS = frozenset({"START", "UNSTOP"})
"""Replies that restore texts to the number (CTIA opt-in keywords)."""


async def record_keyword(app: Application, *, phone: str, body: str,
                         kind: TextKind) -> Result | None:
    """A STOP or START from `phone`: one consent record for every client using the number.

    Recorded in the client directory before the open sessions hear of it, so that no later
    session of any client with this number texts it (STOP) or so texts resume (START).
    """
    if kind is TextKind.OPT_OUT:
        opted_out = True
    elif _for_keywords(body).strip().upper() in START_KEYWORDS:
        opted_out = False
    else:
        return None
    try:
        clients = await app.clients()
    except UnavailableError as error:
        return Result(ResultKind.UNAVAILABLE, str(error))
    return await clients.text_keyword(phone, opted_out=opted_out)
