"""The scheduling system's and the operators' command line.

`schedule` starts a session's workflow; `check-in`, `cancel`, `reschedule`, `responded` and
`text-reply` send it the news; `mark-safe`, `escalate-now`, `stand-down` and `add-note`
record a clinician's decision (refused with the workflow's reason when it cannot apply);
`status` asks it where it is; `audit` reads its trail from PostgreSQL;
`new-key` makes a payload encryption key (it needs no configuration: a missing key is
exactly what the configuration error sends the operator here for).

Two halves, on purpose. `parse_args` and `validate` are pure: they turn the command line
into a request whose every field has been validated, so bad input is refused with one line
naming the field (exit 2) before anything connects or starts. `execute` does the I/O, and
a server that cannot be reached or a session that does not exist is one line (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from missed_session.audit import cli as audit_cli
from missed_session.cli import notices as notices_cli
from missed_session.codec import new_key
from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.domain import decisions, events
from missed_session.domain.intake import BookingRejectedError, check_bookable
from missed_session.domain.models import (
    AuditEvent,
    Cancellation,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    Modality,
    ProtocolSettings,
    Reschedule,
    ResponseChannel,
    RiskTier,
    SessionBooking,
    SessionId,
    SessionState,
    TextReply,
    workflow_id_for,
)
from missed_session.domain.practice import PracticeFileError, PracticeProtocols
from missed_session.practice_file import load_practice_file
from missed_session.scheduling import Scheduled, schedule_session
from missed_session.store import checkpoints
from missed_session.store.audit import AuditStore
from missed_session.store.database import database_url, open_pool, owner_database_url
from missed_session.temporal_client import connect

BAD_INPUT = 2
"""Exit code for input or configuration the operator must fix; nothing was started."""
REFUSED = 2
"""Exit code for a message the session refused (e.g. a cancel after the no-show)."""
FAILED = 1
"""Exit code for a server that could not be reached or a session that is not there."""
QUERY_TIMEOUT = timedelta(seconds=10)
"""A query needs a running worker; without one, say so rather than hang."""
DAY_FILE_SUFFIXES = (".jsonl", ".ndjson")
"""A `--file` with one of these suffixes is a day's schedule: one booking per line."""
DEFAULT_CONCURRENCY = 32
"""Bookings of a day file started at once; the server, not the CLI, should be the limit."""

DECISIONS = {"mark-safe": DecisionKind.MARK_SAFE, "escalate-now": DecisionKind.ESCALATE_NOW,
             "stand-down": DecisionKind.STAND_DOWN, "add-note": DecisionKind.ADD_NOTE}
"""Command -> the clinician decision (the workflow's update of the same name)."""
UPDATES = {"check-in": "check_in", "cancel": "cancel", "reschedule": "reschedule",
           "text-reply": "text_reply",
           "responded": "client_responded"}
"""Command -> the workflow's update; by name, since the CLI must not import workflows."""
BOOKING_FLAGS = {
    "session_id": "session_id", "therapist_id": "therapist_id", "start": "start",
    "duration": "duration_minutes", "modality": "modality", "risk_tier": "risk_tier",
}
CLIENT_FLAGS = {
    "client_ref": "ref", "first_name": "first_name", "phone": "phone", "email": "email",
    "time_zone": "time_zone",
}
EMERGENCY_FLAGS = {
    "emergency_name": "name", "emergency_phone": "phone",
    "emergency_consent_date": "consent_date",
}
PROTOCOL_FLAGS = {
    "grace_period": "grace_period_minutes", "attempts": "max_attempts",
    "spacing": "attempt_spacing_minutes",
}
HIGH_RISK_GRACE_DEFAULT: int = ProtocolSettings().high_risk_grace_period_minutes
_SESSION_ID: TypeAdapter[str] = TypeAdapter(SessionId)


class UsageError(ValueError):
    """Bad input on the command line; the message names the flag or field."""


class CommandFailedError(RuntimeError):
    """The command was valid but could not be carried out; the message says why."""


class RefusedError(CommandFailedError):
    """The session refused the message (too late, already decided); nothing changed."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every bad input is one line."""

    def error(self, message: str) -> NoReturn:
        """Turn argparse's complaint into a UsageError for `main` to print."""
        raise UsageError(message)


@dataclass(frozen=True)
class BookingFile:
    """A `--file` argument: kept with its path so a JSON error can name the file."""

    path: str
    text: str


@dataclass(frozen=True)
class ScheduleRequest:
    """Start a session's workflow (checked bookable at `now`)."""

    booking: SessionBooking
    now: datetime


@dataclass(frozen=True)
class DayScheduleRequest:
    """Start every session of a day file; each booking validated, with its line number."""

    path: str
    bookings: tuple[tuple[int, SessionBooking], ...]
    concurrency: int


@dataclass(frozen=True)
class MessageRequest:
    """Send one message (a workflow update the session may refuse) to a session."""

    session_id: str
    update: str
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
    """Read a session's audit trail from PostgreSQL."""

    session_id: str


Request = (ScheduleRequest | DayScheduleRequest | MessageRequest | DecisionRequest
           | StatusRequest | AuditRequest)


# -- the pure half: command line -> validated request ------------------------------------


def _booking_file(path: str) -> BookingFile:
    try:
        return BookingFile(path, Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        msg = f"cannot read {path!r}: {error}"
        raise argparse.ArgumentTypeError(msg) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line; booking flags are optional here so the model names what is missing."""
    parser = _Parser(prog="starter.py", description=__doc__.splitlines()[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    schedule = commands.add_parser("schedule", help="start a session's workflow")
    schedule.add_argument("--file", type=_booking_file, metavar="BOOKING_JSON",
                          help="the SessionBooking as JSON, instead of the flags below; a "
                               "day's schedule as JSON lines (one booking a line) when the "
                               "name ends in .jsonl or .ndjson: every line is validated "
                               "before any session starts")
    schedule.add_argument("--concurrency", type=int,
                          help="day file only: sessions started at once "
                               f"(default {DEFAULT_CONCURRENCY})")
    schedule.add_argument("--session-id")
    schedule.add_argument("--client-ref", help="pseudonymous client id (safe to log)")
    schedule.add_argument("--first-name")
    schedule.add_argument("--phone", help="E.164, e.g. +14155550123")
    schedule.add_argument("--email")
    schedule.add_argument("--time-zone", help="the client's IANA time zone")
    schedule.add_argument("--therapist-id")
    schedule.add_argument("--start", help="ISO 8601 with a UTC offset")
    schedule.add_argument("--duration", type=int, help="minutes")
    schedule.add_argument("--modality", choices=[m.value for m in Modality])
    schedule.add_argument("--risk-tier", choices=[r.value for r in RiskTier])
    schedule.add_argument("--emergency-name")
    schedule.add_argument("--emergency-phone")
    schedule.add_argument("--emergency-consent-date", metavar="YYYY-MM-DD",
                          help="when the client consented; its presence means consent")
    schedule.add_argument("--grace-period", type=int,
                          help="minutes; the high-risk grace period never exceeds it")
    schedule.add_argument("--attempts", type=int, help="outreach attempts")
    schedule.add_argument("--spacing", type=int, help="minutes between outreach attempts")

    check_in = commands.add_parser("check-in", help="the client arrived or joined")
    cancel = commands.add_parser("cancel", help="the session will not take place")
    cancel.add_argument("--reason", default="")
    reschedule = commands.add_parser("reschedule", help="move the session's start")
    reschedule.add_argument("--start", required=True, help="ISO 8601 with a UTC offset")
    reschedule.add_argument("--reason", default="")
    responded = commands.add_parser("responded", help="the client got back in touch")
    responded.add_argument("--channel", required=True, choices=[c.value for c in ResponseChannel])
    responded.add_argument("--responder", help="`client` (default) or who spoke for them")
    responded.add_argument("--note", default="", help="staff note, kept in the audit trail")
    text_reply = commands.add_parser("text-reply", help="the client texted back (STOP opts out)")
    text_reply.add_argument("--body", required=True, help="what the client wrote")
    decided = []
    for command, kind in DECISIONS.items():
        decision = commands.add_parser(command, help=f"clinician decision: {kind.value}")
        decision.add_argument("--clinician", required=True, help="the clinician's staff id")
        if kind is DecisionKind.ADD_NOTE:
            decision.add_argument("--note", required=True, help="kept in the audit trail")
        else:
            decision.add_argument("--reason", required=True, help="why; kept in the audit trail")
        if kind is DecisionKind.ESCALATE_NOW:
            decision.add_argument("--legal-basis", required=True,
                                  help="e.g. 'vital interests: imminent risk, no consent'")
        decided.append(decision)
    status = commands.add_parser("status", help="where the session is in the protocol")
    audit = commands.add_parser(
        "audit", help="the session's audit trail (PostgreSQL only); also `audit verify|replay"
        " (SESSION_ID | --all)`, `audit export SESSION_ID --format jsonl|fhir` and `audit purge"
        " --before DATE`: see `audit verify --help`; `projections rebuild` rebuilds the"
        " attendance and open-task projections")
    key = commands.add_parser("new-key", help="print a new encryption key as MSR_ENCRYPTION_KEYS")
    key.add_argument("--key-id", default=f"key-{datetime.now(UTC):%Y%m%d}",
                     help="its id in encryption_keys (default: key-<today>)")
    for subparser in (check_in, cancel, reschedule, responded, text_reply, *decided, status,
                      audit):
        subparser.add_argument("session_id", metavar="SESSION_ID")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; raises UsageError (never exits, except for --help)."""
    return build_parser().parse_args(argv)


def _given(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in flags.items()
            if getattr(args, flag) is not None}


def booking_data(args: argparse.Namespace) -> dict[str, Any]:
    """The booking as plain data, from the flags; validation is left to the model."""
    data = _given(args, BOOKING_FLAGS)
    client = _given(args, CLIENT_FLAGS)
    emergency = _given(args, EMERGENCY_FLAGS)
    if emergency:
        emergency["consent"] = "consent_date" in emergency
        client["emergency_contact"] = emergency
    data["client"] = client
    protocol = _given(args, PROTOCOL_FLAGS)
    if "grace_period_minutes" in protocol:
        # Only the standard grace period has a flag; keep the high-risk one no longer.
        protocol["high_risk_grace_period_minutes"] = min(
            HIGH_RISK_GRACE_DEFAULT, protocol["grace_period_minutes"]
        )
    data["protocol"] = protocol
    return data


def _file_data(booking_file: BookingFile) -> Any:
    try:
        return json.loads(booking_file.text)
    except json.JSONDecodeError as error:
        msg = f"--file {booking_file.path}: not valid JSON: {error}"
        raise UsageError(msg) from None


def build_booking(args: argparse.Namespace, *, time_scale: float) -> SessionBooking:
    """The validated booking, from `--file` or the flags.

    `protocol.time_scale` falls back to the configured one, so a demo stack's compressed
    clock applies to bookings that do not say otherwise. Raises ValidationError or
    UsageError naming the field.
    """
    booking_file: BookingFile | None = args.file
    if booking_file is None:
        data = booking_data(args)
    else:
        used = [f"--{flag.replace('_', '-')}" for flag in
                (*BOOKING_FLAGS, *CLIENT_FLAGS, *EMERGENCY_FLAGS, *PROTOCOL_FLAGS)
                if getattr(args, flag) is not None]
        if used:
            msg = f"--file: cannot be combined with {', '.join(used)}"
            raise UsageError(msg)
        data = _file_data(booking_file)
    if isinstance(data, dict):
        protocol = data.setdefault("protocol", {})
        if isinstance(protocol, dict):
            protocol.setdefault("time_scale", time_scale)
    return SessionBooking.model_validate(data)


def is_day_file(booking_file: BookingFile | None) -> bool:
    """Whether `--file` names a day's schedule (JSON lines) rather than one booking."""
    return booking_file is not None and booking_file.path.endswith(DAY_FILE_SUFFIXES)


def build_day(args: argparse.Namespace, *, time_scale: float,
              now: datetime) -> DayScheduleRequest:
    """Validate every line of a day file; the first bad one refuses the whole file.

    Nothing starts unless every booking is well-formed, bookable at `now` and has a
    session id of its own, so a file is never half-started because of a typo on line 9,000.
    Raises UsageError naming the line and the field.
    """
    booking_file: BookingFile = args.file
    concurrency: int = args.concurrency or DEFAULT_CONCURRENCY
    if args.concurrency is not None and args.concurrency < 1:
        msg = f"--concurrency: must be at least 1, got {args.concurrency}"
        raise UsageError(msg)
    bookings: list[tuple[int, SessionBooking]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(booking_file.text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"--file {booking_file.path}: line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            msg = f"{where}: not valid JSON: {error}"
            raise UsageError(msg) from None
        if not isinstance(data, dict):
            msg = f"{where}: a booking must be a JSON object"
            raise UsageError(msg)
        protocol = data.setdefault("protocol", {})
        if isinstance(protocol, dict):
            protocol.setdefault("time_scale", time_scale)
        try:
            booking = SessionBooking.model_validate(data)
            check_bookable(booking, now)
        except ValidationError as error:
            raise UsageError(f"{where}: {describe(error)}") from None
        except BookingRejectedError as error:
            raise UsageError(f"{where}: {error}") from None
        if booking.session_id in first_line:
            msg = (f"{where}: session_id: {booking.session_id} is already booked on line "
                   f"{first_line[booking.session_id]}")
            raise UsageError(msg)
        first_line[booking.session_id] = number
        bookings.append((number, booking))
    if not bookings:
        msg = f"--file {booking_file.path}: no bookings in the file"
        raise UsageError(msg)
    return DayScheduleRequest(booking_file.path, tuple(bookings), concurrency)


def _message_payload(args: argparse.Namespace) -> BaseModel:
    if args.command == "check-in":
        return CheckIn()
    if args.command == "cancel":
        return Cancellation(reason=args.reason)
    if args.command == "reschedule":
        return Reschedule.model_validate({"start": args.start, "reason": args.reason})
    if args.command == "text-reply":
        return TextReply(body=args.body)
    response: dict[str, Any] = {"channel": args.channel, "note": args.note}
    if args.responder is not None:
        response["responder"] = args.responder
    return ClientResponse.model_validate(response)


def validate(args: argparse.Namespace, *, time_scale: float, now: datetime) -> Request:
    """Everything that can be checked without a server, checked; raises naming the field.

    Raises UsageError, pydantic's ValidationError or BookingRejectedError.
    """
    if args.command == "schedule" and is_day_file(args.file):
        if any(getattr(args, flag) is not None for flag in
               (*BOOKING_FLAGS, *CLIENT_FLAGS, *EMERGENCY_FLAGS, *PROTOCOL_FLAGS)):
            msg = "--file: a day file cannot be combined with booking flags"
            raise UsageError(msg)
        return build_day(args, time_scale=time_scale, now=now)
    if args.command == "schedule":
        if args.concurrency is not None:
            msg = "--concurrency: only for a day file (.jsonl)"
            raise UsageError(msg)
        booking = build_booking(args, time_scale=time_scale)
        check_bookable(booking, now)
        return ScheduleRequest(booking, now)
    try:
        session_id = _SESSION_ID.validate_python(args.session_id)
    except ValidationError as error:
        raise UsageError(describe(error, subject="session_id")) from None
    if args.command == "status":
        return StatusRequest(session_id)
    if args.command == "audit":
        return AuditRequest(session_id)
    if args.command in DECISIONS:
        return _decision_request(args, session_id)
    return MessageRequest(session_id, UPDATES[args.command], _message_payload(args))


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


def apply_practice(request: Request, practice: PracticeProtocols, now: datetime) -> Request:
    """Give each booking its therapist's protocol from the practice file (checked again).

    A booking that sets protocol timings itself is refused: the practice file decides, and
    silently overriding either would hide a disagreement.
    """
    if isinstance(request, ScheduleRequest):
        booking = _resolved(request.booking, practice, "")
        check_bookable(booking, now)
        return ScheduleRequest(booking, request.now)
    if isinstance(request, DayScheduleRequest):
        bookings = tuple((number, _resolved(booking, practice, f"line {number}: "))
                         for number, booking in request.bookings)
        return DayScheduleRequest(request.path, bookings, request.concurrency)
    return request


def _resolved(booking: SessionBooking, practice: PracticeProtocols, where: str) -> SessionBooking:
    own = sorted(booking.protocol.model_fields_set - {"time_scale"})
    if own:
        msg = (f"{where}protocol.{own[0]}: set by the practice file {practice.source}; "
               "leave it out of the booking")
        raise UsageError(msg)
    return practice.resolve(booking)


def describe(error: ValidationError, *, subject: str = "booking") -> str:
    """The first error as `field.path: problem`; the input value is left out (it may be PII)."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or subject
    return f"{field}: {first['msg'].removeprefix('Value error, ')}"


# -- the I/O half ----------------------------------------------------------------------------


async def _connect(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except (RuntimeError, OSError) as error:  # OSError: the embedded stack's key file
        msg = f"cannot connect to Temporal at {settings.temporal_address}: {error}"
        raise CommandFailedError(msg) from None


async def _not_found(client: Client, session_id: str) -> CommandFailedError:
    """Tell a session that never existed from one that has already closed."""
    workflow_id = workflow_id_for(session_id)
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return CommandFailedError(f"no session {session_id} (workflow {workflow_id})")
    status = description.status.name.lower() if description.status else "closed"
    return CommandFailedError(
        f"session {session_id} is already closed ({status}, workflow {workflow_id})"
    )


async def _schedule(client: Client, request: ScheduleRequest, settings: Settings) -> str:
    booking = request.booking
    scheduled, _ = await schedule_session(
        client, booking, task_queue=settings.task_queue, now=request.now
    )
    where = f"session {booking.session_id} (workflow {booking.workflow_id})"
    if scheduled is Scheduled.ALREADY_SCHEDULED:
        return f"{where} is already scheduled; nothing changed"
    return f"scheduled {where}"


async def _schedule_day(client: Client, request: DayScheduleRequest,
                        settings: Settings) -> str:
    """Start a day's sessions, `concurrency` at a time; count what each start did.

    A booking Temporal refuses (or whose grace period ran out while the file was being
    started) is reported with its line; the others still start. Exit 1 if any was refused.
    """
    counts = {Scheduled.STARTED: 0, Scheduled.ALREADY_SCHEDULED: 0}
    refused: list[tuple[int, str]] = []
    pending: Iterator[tuple[int, SessionBooking]] = iter(request.bookings)

    async def start_next() -> None:
        for number, booking in pending:  # shared: each booking is taken by one starter
            try:
                scheduled, _ = await schedule_session(
                    client, booking, task_queue=settings.task_queue, now=datetime.now(UTC)
                )
            except BookingRejectedError as error:
                refused.append((number, str(error)))
            except RPCError as error:
                refused.append((number, f"Temporal refused session {booking.session_id}: "
                                        f"{error}"))
            else:
                counts[scheduled] += 1

    await asyncio.gather(*(start_next() for _ in range(request.concurrency)))
    summary = (f"{request.path}: {len(request.bookings)} bookings: "
               f"{counts[Scheduled.STARTED]} started, "
               f"{counts[Scheduled.ALREADY_SCHEDULED]} already scheduled, "
               f"{len(refused)} refused")
    if refused:
        shown = "; ".join(f"line {number}: {problem}"
                          for number, problem in itertools.islice(sorted(refused), 5))
        more = f"; and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise CommandFailedError(f"{summary} ({shown}{more})")
    return summary


async def _send_message(client: Client, request: MessageRequest) -> str:
    workflow_id = workflow_id_for(request.session_id)
    try:
        answer = await client.get_workflow_handle(workflow_id).execute_update(
            request.update, request.payload, result_type=str
        )
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise await _not_found(client, request.session_id) from None
        raise
    except WorkflowUpdateFailedError as error:
        raise _refused(request.session_id, error) from None
    return f"session {request.session_id}: {request.update} {answer}"


async def _decide(client: Client, request: DecisionRequest) -> str:
    handle = client.get_workflow_handle(workflow_id_for(request.session_id))
    try:
        answer = await handle.execute_update(
            request.kind.value, request.decision, result_type=str
        )
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise await _not_found(client, request.session_id) from None
        raise
    except WorkflowUpdateFailedError as error:
        raise _refused(request.session_id, error) from None
    return f"session {request.session_id}: {request.kind.value} {answer}"


def _refused(session_id: str, error: WorkflowUpdateFailedError) -> RefusedError:
    cause = error.cause.message if isinstance(error.cause, ApplicationError) else error
    return RefusedError(f"session {session_id}: {cause}")


async def _status(client: Client, request: StatusRequest) -> str:
    handle = client.get_workflow_handle(workflow_id_for(request.session_id))
    try:
        state = await handle.query("state", result_type=SessionState, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise await _not_found(client, request.session_id) from None
        msg = f"could not ask session {request.session_id} (is a worker running?): {error}"
        raise CommandFailedError(msg) from None
    except WorkflowQueryFailedError as error:
        msg = f"session {request.session_id} could not answer: {error}"
        raise CommandFailedError(msg) from None
    next_action = state.next_action or "none"
    if state.next_action_at is not None:
        next_action += f" at {state.next_action_at.isoformat()}"
    outcome = state.outcome.value if state.outcome else "none yet"
    return "\n".join([
        f"session {request.session_id} (workflow {handle.id})",
        f"status: {state.status.value}",
        f"attempts: {state.attempts_made}",
        f"next action: {next_action}",
        f"outcome: {outcome}",
    ])


def _value(value: object) -> str:
    """A data value as the operator reads it; quoted only when it would be ambiguous."""
    if isinstance(value, str) and value and not any(c.isspace() or c in "=\"" for c in value):
        return value
    return json.dumps(value)


async def _audit(request: AuditRequest, settings: Settings) -> str:
    try:
        pool = await open_pool(database_url(settings), owner_url=owner_database_url(settings),
                               min_size=1, max_size=1)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The URL is left out of the message: it may carry a password.
        msg = f"cannot open the audit database: {error}"
        raise CommandFailedError(msg) from None
    try:
        trail = await AuditStore(pool).trail(request.session_id)
    finally:
        await pool.close()
    if not trail:
        return f"no audit events for session {request.session_id}"
    return "\n".join(
        " ".join([str(event.sequence), event.occurred_at.isoformat(), event.event_type.value,
                  *(f"{key}={_value(value)}" for key, value in sorted(_shown(event).items()))])
        for event in trail
    )


def _shown(event: AuditEvent) -> dict[str, Any]:
    """The event's details as its model reads them, without the unset optional fields.

    A row that its model cannot read is shown as stored, flagged, rather than hidden.
    """
    try:
        return events.read(event).model_dump(mode="json", exclude_none=True)
    except events.UnreadableEventError as error:
        return {**event.data, "unreadable": str(error)}


async def execute(request: Request, settings: Settings) -> str:
    """Carry out a validated request; returns what to print, raises CommandFailedError."""
    if isinstance(request, AuditRequest):
        return await _audit(request, settings)  # PostgreSQL only: works without Temporal
    client = await _connect(settings)
    try:
        if isinstance(request, ScheduleRequest):
            return await _schedule(client, request, settings)
        if isinstance(request, DayScheduleRequest):
            return await _schedule_day(client, request, settings)
        if isinstance(request, MessageRequest):
            return await _send_message(client, request)
        if isinstance(request, DecisionRequest):
            return await _decide(client, request)
        return await _status(client, request)
    except RPCError as error:
        msg = f"Temporal refused the request: {error}"
        raise CommandFailedError(msg) from None


def _fail(message: str, code: int) -> int:
    print("error:", " ".join(message.split()), file=sys.stderr)
    return code


async def _run_audit_action(request: audit_cli.AuditActionRequest,
                            settings: Settings) -> audit_cli.Verdict:
    try:
        pool = await open_pool(database_url(settings), owner_url=owner_database_url(settings),
                               min_size=1, max_size=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        msg = f"cannot open the audit database: {error}"  # not the URL: it may hold a password
        raise CommandFailedError(msg) from None
    try:
        store = AuditStore(pool)
        if isinstance(request, audit_cli.VerifyRequest):
            return await audit_cli.run_verify(request, store,  # PostgreSQL only
                                              checkpoints.signer_for(settings))
        if isinstance(request, audit_cli.PurgeRequest):
            return await audit_cli.run_purge(request, store)
        if isinstance(request, audit_cli.ExportRequest):
            return await audit_cli.run_export(request, store)
        if isinstance(request, audit_cli.RebuildRequest):
            return await audit_cli.run_rebuild(store)
        # Replay runs the workflow code itself: the one command that imports it.
        from worker import WORKFLOW_RUNNER  # noqa: PLC0415
        from workflows.session import SessionWorkflow  # noqa: PLC0415

        client = await _connect(settings)
        setup = audit_cli.ReplaySetup([SessionWorkflow], WORKFLOW_RUNNER)
        try:
            return await audit_cli.run_replay(request, client, store, setup)
        except RPCError as error:
            msg = f"Temporal refused the request: {error}"
            raise CommandFailedError(msg) from None
    finally:
        await pool.close()


def _audit_action(argv: list[str]) -> int:
    """`audit verify|replay ...`: 0 when everything checked out, 1 when not, 2 bad input."""
    try:
        settings = load_settings()
        request = audit_cli.parse(argv, retention_years=settings.audit_retention_years,
                                  now=datetime.now(UTC))
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (audit_cli.AuditUsageError, ConfigurationError) as error:
        return _fail(str(error), BAD_INPUT)
    try:
        verdict = asyncio.run(_run_audit_action(request, settings))
    except CommandFailedError as error:
        return _fail(str(error), FAILED)
    print(verdict.text)
    return 0 if verdict.ok else FAILED


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 done, 1 could not be carried out, 2 bad input or configuration."""
    command_line = sys.argv[1:] if argv is None else argv
    if notices_cli.is_action(command_line):  # notices and roster: missed_session/cli/notices.py
        return notices_cli.main(command_line)
    if audit_cli.is_action(command_line):
        return _audit_action(command_line)
    return _command(command_line)


def _command(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
        if args.command == "new-key":
            print(json.dumps({args.key_id: new_key()}))
            return 0
        settings = load_settings()
        now = datetime.now(UTC)
        request = validate(args, time_scale=settings.time_scale, now=now)
        if settings.practice_file is not None:
            request = apply_practice(request, load_practice_file(settings.practice_file), now)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (UsageError, ConfigurationError, BookingRejectedError, PracticeFileError) as error:
        return _fail(str(error), BAD_INPUT)
    except ValidationError as error:
        return _fail(describe(error), BAD_INPUT)
    try:
        print(asyncio.run(execute(request, settings)))
    except CommandFailedError as error:
        return _fail(str(error), REFUSED if isinstance(error, RefusedError) else FAILED)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
