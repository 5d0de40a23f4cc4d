"""Bookings from the command line: flags, a booking file, or a day file of JSON lines.

Reading is size-limited before anything is parsed, and each booking goes through the
application's one preparation path (model, time scale, practice file, grace period), so a
booking the CLI accepts is one the HTTP API would accept too.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from missed_session.application import limits
from missed_session.application.bookings import BadBookingError
from missed_session.application.service import Application
from missed_session.cli.parser import (
    ALL_BOOKING_FLAGS,
    BOOKING_FLAGS,
    CLIENT_FLAGS,
    DEFAULT_CONCURRENCY,
    EMERGENCY_FLAGS,
    PROTOCOL_FLAGS,
    UsageError,
)
from missed_session.domain.models import ProtocolSettings, SessionBooking

DAY_FILE_SUFFIXES = (".jsonl", ".ndjson")
"""A `--file` with one of these suffixes is a day's schedule: one booking per line."""
HIGH_RISK_GRACE_DEFAULT: int = ProtocolSettings().high_risk_grace_period_minutes


@dataclass(frozen=True)
class DayBookings:
    """Every booking of a day file, validated, with its line number."""

    path: str
    bookings: tuple[tuple[int, SessionBooking], ...]
    concurrency: int


def read_limited(path: str, limit: int, *, what: str) -> str:
    """The text of `path`, refused unreadable or over `limit` bytes (checked before reading)."""
    try:
        file = Path(path)
        limits.check_size(f"{what} {path}", file.stat().st_size, limit)
        return file.read_text(encoding="utf-8")
    except limits.TooLargeError as error:
        raise UsageError(str(error)) from None
    except (OSError, UnicodeDecodeError) as error:
        msg = f"{what} {path}: cannot be read: {error}"
        raise UsageError(msg) from None


def is_day_file(path: str | None) -> bool:
    """Whether `--file` names a day's schedule (JSON lines) rather than one booking."""
    return path is not None and path.endswith(DAY_FILE_SUFFIXES)


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


def _flags_used(args: argparse.Namespace) -> list[str]:
    return [f"--{flag.replace('_', '-')}" for flag in ALL_BOOKING_FLAGS
            if getattr(args, flag) is not None]


def schedule_data(args: argparse.Namespace) -> object:
    """The one booking `schedule` was given, as data: from `--file` or the flags."""
    if args.file is None:
        return booking_data(args)
    used = _flags_used(args)
    if used:
        msg = f"--file: cannot be combined with {', '.join(used)}"
        raise UsageError(msg)
    text = read_limited(args.file, limits.MAX_BOOKING_BYTES, what="--file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        msg = f"--file {args.file}: not valid JSON: {error}"
        raise UsageError(msg) from None


def build_booking(args: argparse.Namespace, app: Application) -> SessionBooking:
    """The validated booking, ready to start; raises UsageError naming the field."""
    try:
        return app.prepare(schedule_data(args))
    except BadBookingError as error:
        raise UsageError(str(error)) from None


def build_day(args: argparse.Namespace, app: Application) -> DayBookings:
    """Validate every line of a day file; the first bad one refuses the whole file.

    Nothing starts unless every booking is well-formed, bookable now and has a session id
    of its own, so a file is never half-started because of a typo on line 9,000 (`import`
    is the command that starts the good lines and reports the bad ones).
    """
    if _flags_used(args):
        msg = "--file: a day file cannot be combined with booking flags"
        raise UsageError(msg)
    concurrency: int = args.concurrency or DEFAULT_CONCURRENCY
    if args.concurrency is not None and args.concurrency < 1:
        msg = f"--concurrency: must be at least 1, got {args.concurrency}"
        raise UsageError(msg)
    text = read_limited(args.file, limits.MAX_DAY_FILE_BYTES, what="--file")
    bookings: list[tuple[int, SessionBooking]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"--file {args.file}: line {number}"
        booking = _day_line(line, where, app)
        if booking.session_id in first_line:
            msg = (f"{where}: session_id: {booking.session_id} is already booked on line "
                   f"{first_line[booking.session_id]}")
            raise UsageError(msg)
        first_line[booking.session_id] = number
        bookings.append((number, booking))
    if not bookings:
        msg = f"--file {args.file}: no bookings in the file"
        raise UsageError(msg)
    return DayBookings(args.file, tuple(bookings), concurrency)


def _day_line(line: str, where: str, app: Application) -> SessionBooking:
    try:
        limits.check_size(where, len(line.encode()), limits.MAX_BOOKING_BYTES)
        data = json.loads(line)
    except limits.TooLargeError as error:
        raise UsageError(str(error)) from None
    except json.JSONDecodeError as error:
        msg = f"{where}: not valid JSON: {error}"
        raise UsageError(msg) from None
    if not isinstance(data, dict):
        msg = f"{where}: a booking must be a JSON object"
        raise UsageError(msg)
    try:
        return app.prepare(data)
    except BadBookingError as error:
        raise UsageError(f"{where}: {error}") from None
