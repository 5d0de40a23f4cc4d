"""The scheduling system's and the operators' command line.

`schedule` starts a session's workflow; `check-in`, `cancel`, `reschedule` and `responded`
send it the news; `status` asks it where it is; `audit` reads its trail from PostgreSQL;
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
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from missed_session.codec import new_key
from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.domain.intake import BookingRejectedError, check_bookable
from missed_session.domain.models import (
    Cancellation,
    CheckIn,
    ClientResponse,
    Modality,
    ProtocolSettings,
    Reschedule,
    ResponseChannel,
    RiskTier,
    SessionBooking,
    SessionId,
    SessionState,
    workflow_id_for,
)
from missed_session.scheduling import Scheduled, schedule_session
from missed_session.store.audit import AuditStore
from missed_session.store.database import database_url, open_pool
from missed_session.temporal_client import connect

BAD_INPUT = 2
"""Exit code for input or configuration the operator must fix; nothing was started."""
FAILED = 1
"""Exit code for a server that could not be reached or a session that is not there."""
QUERY_TIMEOUT = timedelta(seconds=10)
"""A query needs a running worker; without one, say so rather than hang."""

SIGNALS = {"check-in": "check_in", "cancel": "cancel", "reschedule": "reschedule",
           "responded": "client_responded"}
"""Command -> the workflow's signal name; by name, since the CLI must not import workflows."""
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
class SignalRequest:
    """Send one signal to a session's workflow."""

    session_id: str
    signal: str
    payload: BaseModel


@dataclass(frozen=True)
class StatusRequest:
    """Ask a session's workflow for its state."""

    session_id: str


@dataclass(frozen=True)
class AuditRequest:
    """Read a session's audit trail from PostgreSQL."""

    session_id: str


Request = ScheduleRequest | SignalRequest | StatusRequest | AuditRequest


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
                          help="the SessionBooking as JSON, instead of the flags below")
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
    status = commands.add_parser("status", help="where the session is in the protocol")
    audit = commands.add_parser("audit", help="the session's audit trail (PostgreSQL only)")
    key = commands.add_parser("new-key", help="print a new encryption key as MSR_ENCRYPTION_KEYS")
    key.add_argument("--key-id", default=f"key-{datetime.now(UTC):%Y%m%d}",
                     help="its id in encryption_keys (default: key-<today>)")
    for command in (check_in, cancel, reschedule, responded, status, audit):
        command.add_argument("session_id", metavar="SESSION_ID")
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


def _signal_payload(args: argparse.Namespace) -> BaseModel:
    if args.command == "check-in":
        return CheckIn()
    if args.command == "cancel":
        return Cancellation(reason=args.reason)
    if args.command == "reschedule":
        return Reschedule.model_validate({"start": args.start, "reason": args.reason})
    response: dict[str, Any] = {"channel": args.channel, "note": args.note}
    if args.responder is not None:
        response["responder"] = args.responder
    return ClientResponse.model_validate(response)


def validate(args: argparse.Namespace, *, time_scale: float, now: datetime) -> Request:
    """Everything that can be checked without a server, checked; raises naming the field.

    Raises UsageError, pydantic's ValidationError or BookingRejectedError.
    """
    if args.command == "schedule":
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
    return SignalRequest(session_id, SIGNALS[args.command], _signal_payload(args))


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


async def _signal(client: Client, request: SignalRequest) -> str:
    workflow_id = workflow_id_for(request.session_id)
    try:
        await client.get_workflow_handle(workflow_id).signal(request.signal, request.payload)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise await _not_found(client, request.session_id) from None
        raise
    return f"sent {request.signal} to session {request.session_id} (workflow {workflow_id})"


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
        pool = await open_pool(database_url(settings), min_size=1, max_size=1)
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
                  *(f"{key}={_value(value)}" for key, value in sorted(event.data.items()))])
        for event in trail
    )


async def execute(request: Request, settings: Settings) -> str:
    """Carry out a validated request; returns what to print, raises CommandFailedError."""
    if isinstance(request, AuditRequest):
        return await _audit(request, settings)  # PostgreSQL only: works without Temporal
    client = await _connect(settings)
    try:
        if isinstance(request, ScheduleRequest):
            return await _schedule(client, request, settings)
        if isinstance(request, SignalRequest):
            return await _signal(client, request)
        return await _status(client, request)
    except RPCError as error:
        msg = f"Temporal refused the request: {error}"
        raise CommandFailedError(msg) from None


def _fail(message: str, code: int) -> int:
    print("error:", " ".join(message.split()), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 done, 1 could not be carried out, 2 bad input or configuration."""
    try:
        args = parse_args(argv)
        if args.command == "new-key":
            print(json.dumps({args.key_id: new_key()}))
            return 0
        settings = load_settings()
        request = validate(args, time_scale=settings.time_scale, now=datetime.now(UTC))
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (UsageError, ConfigurationError, BookingRejectedError) as error:
        return _fail(str(error), BAD_INPUT)
    except ValidationError as error:
        return _fail(describe(error), BAD_INPUT)
    try:
        print(asyncio.run(execute(request, settings)))
    except CommandFailedError as error:
        return _fail(str(error), FAILED)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
