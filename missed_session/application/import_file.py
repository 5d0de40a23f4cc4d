"""Reading an import file (NDJSON or CSV) into bookings, line by line, never all-or-nothing.

Pure apart from the preparation each booking goes through: every line is either a booking
ready to start or a reason it is refused, with its line number, so an import reports every
bad line at once and still starts the good ones. CSV columns are the booking's fields with
dotted names for nested ones (`client.phone`, `client.emergency_contact.consent_date`);
an empty cell is a field left out, and the model reads `true`, `yes` and `50` as it
would their JSON values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from missed_session.application import limits
from missed_session.application.bookings import BadBookingError
from missed_session.domain.models import SessionBooking

JSON_LINES = (".ndjson", ".jsonl")
CSV = (".csv",)
SUFFIXES = (*JSON_LINES, *CSV)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (unknown format, no header, too large)."""


@dataclass(frozen=True)
class Line:
    """One line of the file: its booking, or why it has none."""

    number: int
    booking: SessionBooking | None = None
    problem: str | None = None


def read_lines(name: str, text: str, prepare: Callable[[object], SessionBooking],
               ) -> Iterator[Line]:
    """Every non-empty line of `text` (named `name`) as a booking or a problem."""
    for number, row in read_rows(name, text):
        yield prepared(number, row, prepare)


def read_rows(name: str, text: str) -> Iterator[tuple[int, object | str]]:
    """Every non-empty line of `text` as data, or the problem found reading it."""
    limits.check_size(name, len(text.encode()), limits.MAX_DAY_FILE_BYTES)
    if name.endswith(JSON_LINES):
        return _json_rows(text)
    if name.endswith(CSV):
        return _csv_rows(text)
    msg = f"{name}: an import file is {', '.join(SUFFIXES)}"
    raise ImportFileError(msg)


def prepared(number: int, row: object | str,
             prepare: Callable[[object], SessionBooking]) -> Line:
    """Line `number` as a booking, or why it has none."""
    if isinstance(row, str):  # a problem found while reading the line
        return Line(number, problem=row)
    try:
        return Line(number, booking=prepare(row))
    except BadBookingError as error:
        return Line(number, problem=str(error))


def _json_rows(text: str) -> Iterator[tuple[int, object | str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line.encode()) > limits.MAX_BOOKING_BYTES:
            yield number, f"longer than {limits.MAX_BOOKING_BYTES:,} bytes"
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, f"not valid JSON: {error}"
            continue
        yield number, data if isinstance(data, dict) else "a booking must be a JSON object"


def _csv_rows(text: str) -> Iterator[tuple[int, object | str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    if not reader.fieldnames:
        msg = "the CSV file has no header line"
        raise ImportFileError(msg)
    try:
        for row in reader:
            number = reader.line_num
            if None in row:
                yield number, "more cells than the header has columns"
                continue
            cells = {key: value for key, value in row.items() if value not in {None, ""}}
            if cells:
                yield number, _nested(cells)
    except csv.Error as error:
        yield reader.line_num, f"not valid CSV: {error}"


def _nested(cells: dict[str, str]) -> dict[str, Any]:
    """`{"client.phone": x}` -> `{"client": {"phone": x}}` (the model reads "true", "50")."""
    data: dict[str, Any] = {}
    for key, value in cells.items():
        target = data
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                break
        else:
            target[leaf] = value
    return data
