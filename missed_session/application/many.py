"""Scheduling many bookings at once (a day file, an import): bounded, counted, per line.

Each booking goes through the same `schedule` use case as a single one, so a re-run finds
its sessions already scheduled and a changed line is refused naming its fields; the first
failure never stops the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application
from missed_session.domain.models import SessionBooking


@dataclass
class Tally:
    """What scheduling a batch did, line by line."""

    started: int = 0
    already_scheduled: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason), for every booking that did not start or match."""

    @property
    def total(self) -> int:
        """How many bookings were handled."""
        return self.started + self.already_scheduled + len(self.refused)

    def count(self, line: int, result: Result) -> None:
        """Add one booking's result."""
        if result.kind is ResultKind.STARTED:
            self.started += 1
        elif result.kind is ResultKind.ALREADY_SCHEDULED:
            self.already_scheduled += 1
        else:
            self.refused.append((line, result.message))


async def schedule_many(app: Application, bookings: Iterable[tuple[int, SessionBooking]], *,
                        concurrency: int, tally: Tally | None = None,
                        on_result: Callable[[int, Result], None] | None = None) -> Tally:
    """Schedule every booking, `concurrency` at a time; the tally counts each by its line."""
    tally = tally if tally is not None else Tally()
    pending = iter(bookings)

    async def start_next() -> None:
        for line, booking in pending:  # shared: each booking is taken by one starter
            result = await app.schedule_booking(booking)
            tally.count(line, result)
            if on_result is not None:
                on_result(line, result)

    await asyncio.gather(*(start_next() for _ in range(max(1, concurrency))))
    tally.refused.sort()
    return tally
