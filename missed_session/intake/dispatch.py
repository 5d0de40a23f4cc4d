"""Executing intake commands through the application layer, with the delivery rules.

The rules for out-of-order and repeated delivery live here, in one place for every format:

- the same message twice (same delivery key): answered with the first answer, nothing
  done again (the answer is read back from PostgreSQL, so a restart does not forget it);
- an older message after a newer one for the same session (by the sender's own time):
  recorded and not applied;
- a cancel before its booking: recorded as a tombstone; the booking, when it comes, is
  recorded and not started;
- a reschedule or change after check-in (the session closed) or after the no-show:
  refused with the workflow's reason;
- a booking for a session that exists: unchanged when identical or at the same start,
  moved when only its start differs; never a second workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

import asyncpg

from missed_session.application import Application, BadBookingError, Result, ResultKind
from missed_session.domain.models import Cancellation, Reschedule, SessionBooking
from missed_session.domain.models import CheckIn as CheckInMessage
from missed_session.intake.commands import (
    Attended,
    Book,
    Cancel,
    CheckIn,
    Command,
    Incoming,
    NoShow,
    Record,
    Refuse,
    Source,
)
from missed_session.intake.store import IntakeStore, StoredAnswer

ALIASED_SOURCES = frozenset({Source.CALCOM, Source.CALENDLY})
"""Schedulers that give a rescheduled booking a new id."""


class OutcomeKind(StrEnum):
    """What intake did with a message; each format maps it to its own answer."""

    APPLIED = "applied"
    """The session now reflects the message (started, moved, cancelled, checked in)."""
    UNCHANGED = "unchanged"
    """The session already reflected it (the same booking, the same start)."""
    RECORDED = "recorded"
    """Nothing to apply; the message is recorded with the reason (proposed, stale, ...)."""
    REFUSED = "refused"
    """A valid message the session cannot take (it closed, the workflow refused)."""
    NOT_FOUND = "not_found"
    """It names a session that does not exist."""
    BAD_INPUT = "bad_input"
    """Readable, but a field is missing or wrong; nothing was done."""
    MALFORMED = "malformed"
    """It could not be read at all; nothing was done."""
    UNAVAILABLE = "unavailable"
    """Temporal or PostgreSQL could not be reached; not recorded, so a retry is processed."""


SessionCommand = Book | Cancel | CheckIn | NoShow | Attended
"""The commands that act on one session."""

SUCCESSES = frozenset({OutcomeKind.APPLIED, OutcomeKind.UNCHANGED, OutcomeKind.RECORDED})


@dataclass(frozen=True)
class Outcome:
    """What intake did with one message: a kind and one line for the sender (no PII)."""

    kind: OutcomeKind
    message: str
    session_id: str | None = None
    started: bool = False
    """True when this message started the session's workflow."""


Render = Callable[[Incoming, Outcome], tuple[int, str]]
"""An entry point's answer for an outcome: (HTTP status, body) -- the body an ACK or JSON."""

_BY_RESULT = {
    ResultKind.STARTED: OutcomeKind.APPLIED,
    ResultKind.APPLIED: OutcomeKind.APPLIED,
    ResultKind.ALREADY_SCHEDULED: OutcomeKind.UNCHANGED,
    ResultKind.REFUSED: OutcomeKind.REFUSED,
    ResultKind.NOT_FOUND: OutcomeKind.NOT_FOUND,
    ResultKind.BAD_INPUT: OutcomeKind.BAD_INPUT,
    ResultKind.UNAVAILABLE: OutcomeKind.UNAVAILABLE,
}


class Intake:
    """Executes translated messages once, by their delivery key."""

    def __init__(self, app: Application, store: IntakeStore) -> None:
        self._app = app
        self._store = store

    async def stored(self, source: Source, key: str) -> StoredAnswer | None:
        """The first answer to a delivery, if it was answered before."""
        return await self._store.answer(source.value, key)

    async def answer(self, incoming: Incoming, render: Render) -> StoredAnswer:
        """The answer to a delivered message: the first one stored, else a new one.

        When PostgreSQL fails, the answer says "unavailable" (HTTP 503, HL7 AR) and nothing
        is stored, so the sender's retry is processed as new.
        """
        try:
            return await self._answer(incoming, render)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            outcome = Outcome(OutcomeKind.UNAVAILABLE,
                              f"the intake database failed ({type(error).__name__}); "
                              "send the message again")
            status, body = render(incoming, outcome)
            return StoredAnswer(status, body, outcome.kind.value)

    async def _answer(self, incoming: Incoming, render: Render) -> StoredAnswer:
        first = await self._store.answer(incoming.source.value, incoming.key)
        if first is not None:
            return first
        outcome = await self.execute(incoming)
        status, body = render(incoming, outcome)
        if outcome.kind is OutcomeKind.UNAVAILABLE:
            return StoredAnswer(status, body, outcome.kind.value)
        return await self._store.remember(
            source=incoming.source.value, key=incoming.key, session_id=outcome.session_id,
            command=type(incoming.command).__name__.lower(), outcome=outcome.kind.value,
            sent_at=incoming.sent_at, status=status, answer=body)

    async def execute(self, incoming: Incoming) -> Outcome:
        """Carry out the message's command under the delivery rules (no duplicate check)."""
        command = incoming.command
        if isinstance(command, Refuse):
            kind = OutcomeKind.MALFORMED if command.malformed else OutcomeKind.BAD_INPUT
            return Outcome(kind, command.reason, command.session_id)
        if command.session_id is not None and (
                incoming.previous_ids or incoming.source in ALIASED_SOURCES):
            session = await self._store.resolve(
                incoming.source.value, (*incoming.previous_ids, command.session_id))
            command = _renamed(command, session)
        if isinstance(command, Record):
            return Outcome(OutcomeKind.RECORDED, _recorded(command.note, command.session_id),
                           command.session_id)
        assert not isinstance(command, Refuse)  # returned above; renaming keeps the type
        stale = await self._stale(command.session_id, incoming.sent_at)
        if stale is not None:
            return stale
        outcome = await self._apply(command)
        if outcome.kind in {OutcomeKind.APPLIED, OutcomeKind.UNCHANGED}:
            start = command.start if isinstance(command, Book) else None
            await self._store.applied(command.session_id, sent_at=incoming.sent_at,
                                      start=start)
        return outcome

    async def _stale(self, session_id: str, sent_at: datetime | None) -> Outcome | None:
        known = await self._store.session(session_id)
        if known is None or known.last_sent_at is None or sent_at is None:
            return None
        if sent_at < known.last_sent_at:
            return Outcome(
                OutcomeKind.RECORDED,
                f"session {session_id}: recorded, not applied: the message was made at "
                f"{sent_at.isoformat()}, before the newest one applied "
                f"({known.last_sent_at.isoformat()})", session_id)
        return None

    async def _apply(self, command: SessionCommand) -> Outcome:
        if isinstance(command, Book):
            return await self._book(command)
        if isinstance(command, CheckIn):
            return _from(await self._app.check_in(command.session_id,
                                                  CheckInMessage(at=command.at)))
        if isinstance(command, Attended):
            result = await self._app.check_in(command.session_id, CheckInMessage())
            return _from(result, note="the session took place: recorded as a check-in")
        if isinstance(command, NoShow):
            return Outcome(
                OutcomeKind.RECORDED,
                f"session {command.session_id}: the scheduler's no-show is recorded; the "
                "session declares its own no-show when the grace period passes without a "
                "check-in (an immediate no-show is not supported by the workflow yet)",
                command.session_id)
        return await self._cancel(command)

    async def _book(self, command: Book) -> Outcome:
        session = command.session_id
        known = await self._store.session(session)
        if known is not None and known.cancelled_unbooked:
            return Outcome(OutcomeKind.RECORDED,
                           f"session {session}: recorded, not started: it was cancelled "
                           "before this booking arrived", session)
        if command.booking is None or (known is not None and known.start == command.start):
            # Without a booking only the start can be applied; at a known start, nothing.
            return await self._move_only(command, known.start if known else None)
        booking = self._prepared(command)
        if isinstance(booking, Outcome):
            return booking
        result = await self._app.schedule_booking(booking)
        if result.kind is ResultKind.STARTED:
            return Outcome(OutcomeKind.APPLIED, result.message, session, started=True)
        if result.kind is ResultKind.REFUSED and result.differing_fields:
            return await self._booking_differs(command, result)
        return _from(result)

    def _prepared(self, command: Book) -> SessionBooking | Outcome:
        """The booking ready to start (practice protocol, time scale), or why not."""
        assert command.booking is not None
        session = command.session_id
        data = command.booking.model_dump(mode="json", exclude_unset=True)
        data["session_id"] = session
        try:
            return self._app.prepare(data)
        except BadBookingError as error:
            return Outcome(OutcomeKind.BAD_INPUT, f"session {session}: {error}", session)

    async def _booking_differs(self, command: Book, held: Result) -> Outcome:
        """A resent booking that differs from the one held.

        Move the start if that is what changed; other differences (client details) are
        named and not applied.
        """
        session = command.session_id
        others = [field for field in held.differing_fields if field != "start"]
        note = (f"; not applied, the client directory would hold them and is not built yet: "
                f"{', '.join(others)}") if others else ""
        if "start" not in held.differing_fields:
            return Outcome(OutcomeKind.UNCHANGED,
                           f"session {session}: already scheduled at this start{note}",
                           session)
        moved = await self._app.reschedule(
            session, Reschedule(start=command.start, reason=command.reason[:200]))
        return _from(moved, note=f"moved to {command.start.isoformat()}{note}")

    async def _move_only(self, command: Book, known_start: datetime | None) -> Outcome:
        """A message without what a booking needs can still move a session that exists."""
        session = command.session_id
        if known_start is not None and known_start == command.start:
            return Outcome(OutcomeKind.UNCHANGED,
                           f"session {session}: the start did not change; nothing moved",
                           session)
        result = await self._app.reschedule(
            session, Reschedule(start=command.start, reason=command.reason[:200]))
        if result.kind is ResultKind.NOT_FOUND and _never_existed(result):
            return Outcome(OutcomeKind.BAD_INPUT,
                           f"session {session}: not started: {command.incomplete}", session)
        return _from(result, note=f"moved to {command.start.isoformat()}")

    async def _cancel(self, command: Cancel) -> Outcome:
        session = command.session_id
        reason = command.reason or ("entered in error" if command.entered_in_error else "")
        result = await self._app.cancel(session, Cancellation(reason=reason[:200]))
        if result.kind is ResultKind.NOT_FOUND and _never_existed(result):
            await self._store.applied(session, sent_at=None, cancelled_unbooked=True)
            return Outcome(OutcomeKind.RECORDED,
                           f"session {session}: cancelled before its booking arrived; "
                           "recorded, and a later booking for it will not be started", session)
        note = "entered in error: cancelled" if command.entered_in_error else ""
        return _from(result, note=note)


def _renamed(command: Command, session: str) -> Command:
    """The command addressed to the session its ids resolved to."""
    if isinstance(command, Book) and command.booking is not None:
        booking = command.booking.model_copy(update={"session_id": session})
        return replace(command, session_id=session, booking=booking)
    if isinstance(command, Refuse):
        return command
    return replace(command, session_id=session)


def _never_existed(result: Result) -> bool:
    """Not found because no such workflow was ever started (not because it closed)."""
    return result.message.startswith("no session ")


def _recorded(note: str, session_id: str | None) -> str:
    return f"session {session_id}: recorded: {note}" if session_id else f"recorded: {note}"


def _from(result: Result, *, note: str = "") -> Outcome:
    kind = _BY_RESULT[result.kind]
    message = f"{result.message} ({note})" if note and kind in SUCCESSES else result.message
    return Outcome(kind, message, result.session_id)
