"""A text from a phone, whichever provider carried it: acknowledgment, opt-out, HELP, reply.

A clinician on the roster who answers a notice (`1`, `ACK <code>`) acknowledges it
(`application.notices.sms_reply`); that is asked first, since a clinician's number is no
client's. Any other sender is matched by phone number to the client's open sessions (every
client ref
booked with that number). An opt-out keyword opts the number out in each of them; HELP is
answered with neutral help text and touches no session; anything else is the client's
response to the open sessions, where the protocol decides whether it counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from temporalio.service import RPCError

from missed_session.application import notices
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.domain import messages
from missed_session.domain.models import TextReply

HELP_KEYWORDS = frozenset({"HELP", "INFO"})
"""The carriers' help keywords (CTIA): answered with the help text, never a response."""


class TextKind(StrEnum):
    """What an inbound text is."""

    ACKNOWLEDGMENT = "acknowledgment"
    """A clinician's reply to a notice (accepted or refused: recorded either way)."""
    OPT_OUT = "opt_out"
    HELP = "help"
    RESPONSE = "response"


def classify(body: str) -> TextKind:
    """What `body` asks for (pure; the opt-out rule is the protocol's own)."""
    if messages.is_opt_out(body):
        return TextKind.OPT_OUT
    if body.strip().strip(".!?").upper() in HELP_KEYWORDS:
        return TextKind.HELP
    return TextKind.RESPONSE


async def _acknowledgment(app: Application, phone: str, body: str) -> InboundAnswer | None:
    """A roster clinician's reply to a notice, carried out; None when the sender is none."""
    try:
        answer = await notices.sms_reply(await app.temporal(), await app.pool(), phone, body)
    except UnavailableError as error:
        return InboundAnswer(TextKind.ACKNOWLEDGMENT, Result(ResultKind.UNAVAILABLE, str(error)))
    if answer.kind is notices.ResultKind.NOT_A_CLINICIAN:
        return None
    return InboundAnswer(TextKind.ACKNOWLEDGMENT,
                         Result(ResultKind(answer.kind.value), answer.message))


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


async def receive_text(app: Application, *, phone: str, body: str,
                       message_id: str | None) -> InboundAnswer:
    """Deliver a text from `phone`: to a clinician's notice, or to the client's open sessions."""
    acknowledgment = await _acknowledgment(app, phone, body)
    if acknowledgment is not None:
        return acknowledgment
    kind = classify(body)
    if kind is TextKind.HELP:
        settings = app.settings
        return InboundAnswer(kind, Result(ResultKind.APPLIED, "help text sent"),
                             reply=help_text(settings.sender_name, settings.callback_number))
    recorded = await record_keyword(app, phone=phone, body=body, kind=kind)
    if recorded is not None and not recorded.ok:
        return InboundAnswer(kind, recorded)  # a STOP must not be lost: the sender retries
    return await _to_open_sessions(app, kind, phone, body, message_id)


async def _to_open_sessions(app: Application, kind: TextKind, phone: str, body: str,
                            message_id: str | None) -> InboundAnswer:
    """An opt-out or a reply, to every open session of the client(s) using `phone`."""
    try:
        sessions = await app.sessions()
        session_ids = await sessions.open_sessions(phone)
    except UnavailableError as error:
        return InboundAnswer(kind, Result(ResultKind.UNAVAILABLE, str(error)))
    except RPCError as error:  # visibility unavailable (or not implemented by the server)
        return InboundAnswer(kind, Result(ResultKind.UNAVAILABLE,
                                          f"cannot look up the sender's sessions: {error}"))
    if not session_ids:
        return InboundAnswer(kind, Result(ResultKind.NOT_FOUND,
                                          "no open session for the sender's number"))
    reply = TextReply(body=body[:1600])
    update_id = None if message_id is None else f"text-{message_id}"
    results = [await sessions.text_reply(session_id, reply, message_id=update_id)
               for session_id in session_ids]
    accepted = tuple(r.session_id for r in results if r.ok and r.session_id is not None)
    if accepted:
        return InboundAnswer(kind, Result(
            ResultKind.APPLIED, f"{kind.value} delivered to {len(accepted)} open session(s)"),
            sessions=accepted)
    return InboundAnswer(kind, Result(ResultKind.REFUSED, "; ".join(r.message for r in results)),
                         sessions=())


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
    elif body.strip().upper() in START_KEYWORDS:
        opted_out = False
    else:
        return None
    try:
        clients = await app.clients()
    except UnavailableError as error:
        return Result(ResultKind.UNAVAILABLE, str(error))
    return await clients.text_keyword(phone, opted_out=opted_out)
