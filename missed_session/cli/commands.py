"""From a parsed command line to a use case's result.

Two halves, on purpose. `validate` checks everything that can be checked without a server
(so bad input is refused with one line naming the field, exit 2, before anything connects
or starts); `execute` calls the application's use case and returns its result.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from missed_session.application.clients import sends_details
from missed_session.application.many import Tally, schedule_many
from missed_session.application.problems import describe
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.application.sessions import Message
from missed_session.cli.booking_input import (
    DayBookings,
    build_booking,
    build_day,
    is_day_file,
    schedule_data,
)
from missed_session.cli.parser import DECISIONS, MESSAGES, UsageError
from missed_session.domain import decisions
from missed_session.domain.models import (
    Cancellation,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    Reschedule,
    SessionBooking,
    SessionId,
    TextReply,
)

_SESSION_ID: TypeAdapter[str] = TypeAdapter(SessionId)
REFUSALS_SHOWN = 5
"""A day file's summary names this many refused lines, then counts the rest."""


@dataclass(frozen=True)
class ScheduleRequest:
    """Start one session's workflow."""

    booking: SessionBooking | None
    """The validated booking; None when it names only its client's ref (`data`)."""
    data: object = None
    """A booking naming only its client's ref: the directory completes it when the request
    runs (`Application.schedule`, the HTTP API's resolution)."""


@dataclass(frozen=True)
class MessageRequest:
    """Send one piece of news to a session's workflow."""

    session_id: str
    message: Message
    payload: BaseModel


@dataclass(frozen=True)
class DecisionRequest:
    """Record a clinician's decision (a workflow update: validated, then recorded)."""

    session_id: str
    kind: DecisionKind
    decision: ClinicianDecision


@dataclass(frozen=True)
class StatusRequest:
    """Ask a session's workflow for its state."""

    session_id: str


@dataclass(frozen=True)
class AuditRequest:
    """Read a session's audit trail from PostgreSQL (or a notice's, by its key)."""

    session_id: str


Request = (ScheduleRequest | DayBookings | MessageRequest | DecisionRequest | StatusRequest
           | AuditRequest)


def validate(args: argparse.Namespace, app: Application) -> Request:
    """Everything that can be checked without a server, checked; raises naming the field.

    Raises UsageError, pydantic's ValidationError or PracticeFileError.
    """
    if args.command == "schedule":
        return _schedule_request(args, app)
    if args.command == "audit":
        return AuditRequest(trail_id_of(args.session_id))
    session_id = session_id_of(args.session_id)
    if args.command == "status":
        return StatusRequest(session_id)
    if args.command in DECISIONS:
        return _decision_request(args, session_id)
    return MessageRequest(session_id, MESSAGES[args.command], _message_payload(args))


def _schedule_request(args: argparse.Namespace, app: Application) -> Request:
    if is_day_file(args.file):
        return build_day(args, app)
    if args.concurrency is not None:
        msg = "--concurrency: only for a day file (.jsonl)"
        raise UsageError(msg)
    data = schedule_data(args)
    if not sends_details(data):
        return ScheduleRequest(None, data)
    return ScheduleRequest(build_booking(args, app))


def trail_id_of(value: str) -> str:
    """A session id, or a notice key (`<session id>/<name>`: the notice's own trail)."""
    if "/" in value:
        session_part, _, name = value.partition("/")
        session_id_of(session_part)
        session_id_of(name)
        return value
    return session_id_of(value)


def session_id_of(value: str) -> str:
    """A session id from the command line; raises UsageError naming `session_id`."""
    try:
        return _SESSION_ID.validate_python(value)
    except ValidationError as error:
        raise UsageError(describe(error, subject="session_id")) from None


def _message_payload(args: argparse.Namespace) -> BaseModel:
    message = MESSAGES[args.command]
    if message is Message.CHECK_IN:
        return CheckIn()
    if message is Message.CANCEL:
        return Cancellation(reason=args.reason)
    if message is Message.RESCHEDULE:
        return Reschedule.model_validate({"start": args.start, "reason": args.reason})
    if message is Message.TEXT_REPLY:
        return TextReply(body=args.body)
    response: dict[str, Any] = {"channel": args.channel, "note": args.note}
    if args.responder is not None:
        response["responder"] = args.responder
    return ClientResponse.model_validate(response)


def _decision_request(args: argparse.Namespace, session_id: str) -> DecisionRequest:
    kind = DECISIONS[args.command]
    decision = ClinicianDecision(
        clinician_id=args.clinician,
        reason=args.note if kind is DecisionKind.ADD_NOTE else args.reason,
        legal_basis=getattr(args, "legal_basis", None) or "",
    )
    missing = decisions.missing_field(kind, decision)
    if missing is not None:
        raise UsageError(missing)
    return DecisionRequest(session_id, kind, decision)


async def execute(request: Request, app: Application) -> Result:
    """Carry out a validated request through the application."""
    if isinstance(request, AuditRequest):
        return await app.audit(request.session_id)  # PostgreSQL only: works without Temporal
    if isinstance(request, ScheduleRequest):
        return await (app.schedule(request.data) if request.booking is None
                      else app.schedule_booking(request.booking))
    if isinstance(request, DayBookings):
        return await _schedule_day(request, app)
    if isinstance(request, MessageRequest):
        return await _send(request, app)
    if isinstance(request, DecisionRequest):
        return await app.decide(request.session_id, request.kind, request.decision)
    return await app.status(request.session_id)


async def _send(request: MessageRequest, app: Application) -> Result:
    payload, session_id = request.payload, request.session_id
    if isinstance(payload, CheckIn):
        return await app.check_in(session_id, payload)
    if isinstance(payload, Cancellation):
        return await app.cancel(session_id, payload)
    if isinstance(payload, Reschedule):
        return await app.reschedule(session_id, payload)
    if isinstance(payload, TextReply):
        return await app.text_reply(session_id, payload)
    assert isinstance(payload, ClientResponse)
    return await app.respond(session_id, payload)


async def _schedule_day(request: DayBookings, app: Application) -> Result:
    """Start a day's sessions, `concurrency` at a time; count what each start did.

    A booking refused while starting (Temporal down, the grace period ran out meanwhile, a
    different booking under the id) is reported with its line; the others still start.
    """
    try:
        await app.sessions()  # one clear line when Temporal is down, not one per booking
    except UnavailableError as error:
        return Result(ResultKind.UNAVAILABLE, str(error))
    tally = await schedule_many(app, request.bookings, concurrency=request.concurrency)
    summary = day_summary(request.path, tally)
    if tally.refused:
        return Result(ResultKind.REFUSED, summary)
    return Result(ResultKind.APPLIED, summary)


def day_summary(path: str, tally: Tally) -> str:
    """`path: N bookings: s started, a already scheduled, r refused (line n: why; ...)`."""
    summary = (f"{path}: {tally.total} bookings: {tally.started} started, "
               f"{tally.already_scheduled} already scheduled, {len(tally.refused)} refused")
    if not tally.refused:
        return summary
    shown = "; ".join(f"line {number}: {problem}"
                      for number, problem in itertools.islice(tally.refused, REFUSALS_SHOWN))
    more = len(tally.refused) - REFUSALS_SHOWN
    return f"{summary} ({shown}{f'; and {more} more' if more > 0 else ''})"
