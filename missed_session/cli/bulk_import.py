"""`starter.py import FILE`: a day's schedule from NDJSON or CSV, safe to run again.

Unlike `schedule --file day.jsonl` (all or nothing), an import starts every good line and
reports every bad one with its line number and reason: a scheduling system's export with
one broken row should not hold back the rest of the day. Sessions already scheduled with
the identical booking count as such; a line that differs from the booking its id holds is
refused naming the fields. Exit 0 when nothing was refused, 2 when a line was, 1 when
Temporal could not be reached.
"""

from __future__ import annotations

import argparse
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from missed_session.application import limits
from missed_session.application.clients import sends_details
from missed_session.application.import_file import ImportFileError, Line, prepared, read_rows
from missed_session.application.many import Tally, schedule_many
from missed_session.application.results import Result
from missed_session.application.service import Application, UnavailableError
from missed_session.cli.booking_input import read_limited
from missed_session.cli.parser import UsageError
from missed_session.cli.render import BAD_INPUT, DONE, FAILED, REFUSED, fail
from missed_session.domain.models import SessionBooking

SHOWN = 50
"""Refused lines listed one by one; the rest are counted."""


async def run_import(args: argparse.Namespace, app: Application) -> int:
    """Validate every line, start the good ones concurrently, print the summary."""
    path: str = args.import_file
    if args.concurrency < 1:
        return fail(f"--concurrency: must be at least 1, got {args.concurrency}", BAD_INPUT)
    try:
        text = read_limited(path, limits.MAX_DAY_FILE_BYTES, what="import")
        rows = list(read_rows(path, text))
    except (UsageError, ImportFileError, limits.TooLargeError) as error:
        return fail(str(error), BAD_INPUT)
    lines = [await _line(app, number, row) for number, row in rows]
    tally = Tally()
    for line in lines:
        if line.problem is not None:
            tally.refused.append((line.number, line.problem))
    bookings = [(line.number, line.booking) for line in lines if line.booking is not None]
    if bookings:
        try:
            await app.sessions()  # one clear line when Temporal is down
        except UnavailableError as error:
            return fail(str(error), FAILED)
        await _start(app, bookings, tally, concurrency=args.concurrency,
                     show_progress=not args.no_progress and sys.stderr.isatty())
    print(summary(path, tally))
    return REFUSED if tally.refused else DONE


async def _line(app: Application, number: int, row: object | str) -> Line:
    """One line prepared (one naming only its client's ref: from the directory first)."""
    if not isinstance(row, str) and not sends_details(row):
        resolved = await app.resolve_booking(row)
        if isinstance(resolved, Result):
            return Line(number, problem=resolved.message)
        row = resolved
    return prepared(number, row, app.prepare)


async def _start(app: Application, bookings: list[tuple[int, SessionBooking]], tally: Tally, *,
                 concurrency: int, show_progress: bool) -> None:
    progress = Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=not show_progress,
                        console=None, transient=True)
    with progress:
        task = progress.add_task("import", total=len(bookings))

        def advance(_: int, __: Result) -> None:
            progress.advance(task)

        await schedule_many(app, bookings, concurrency=concurrency, tally=tally,
                            on_result=advance)


def summary(path: str, tally: Tally) -> str:
    """The counts, then each refused line with its reason (the first SHOWN of them)."""
    head = (f"{path}: {tally.total} bookings: {tally.started} started, "
            f"{tally.already_scheduled} already scheduled, {len(tally.refused)} refused")
    refused = sorted(tally.refused)
    lines = [head, *(f"  line {number}: {' '.join(reason.split())}"
                     for number, reason in refused[:SHOWN])]
    if len(refused) > SHOWN:
        lines.append(f"  and {len(refused) - SHOWN} more refused lines")
    return "\n".join(lines)
