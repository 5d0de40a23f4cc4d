"""Executing intake commands through the application layer, with the delivery rules.

The rules for out-of-order and repeated delivery live here, in one place for every format:

- the same message twice (same delivery key): answered with the first answer, nothing
  done again (the answer is read back from PostgreSQL, so a restart does not forget it),
  when that answer is final; an answer that depends on state or configuration (no such
  session yet, a setting missing, a sender clock ahead of ours) is worked out again;
- messages are applied in the order they are received; a sender's own time only drops a
  message (other than a check-in) older than the newest one applied to the session from
  the same sender feed,
  and that newest time is never taken beyond our receipt (a clock ahead cannot block
  later messages); a message dated more than the allowed skew into the future is refused
  naming its timestamp;
- a no-show, check-in or change for a session that does not exist is refused (not found),
  and so is a change to a session that has closed, also when it would move nothing;
- text PostgreSQL cannot store (NUL, lone surrogates) is refused before it reaches the
  database, naming the field; only a failing database is called unavailable;
- a cancel before its booking: recorded as a tombstone; the booking, when it comes, is
  recorded and not started;
- a reschedule or change after check-in (the session closed) or after the no-show:
  refused with the workflow's reason;
- a booking for a session that exists: unchanged when identical or at the same start,
  moved when only its start differs; never a second workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from missed_session.application import (
    Application,
    BadBookingError,
    Result,
    ResultKind,
    UnavailableError,
)
from missed_session.application.errors import DATABASE_FAILED, VALUE_REFUSED
from missed_session.application.results import Lifecycle
from missed_session.domain.models import (
    Cancellation,
    Reschedule,
    SessionBooking,
    workflow_id_for,
)
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
from missed_session.store.intake import IntakeStore, StoredAnswer

ALIASED_SOURCES = frozenset({Source.CALCOM, Source.CALENDLY})
"""Schedulers that give a rescheduled booking a new id."""
SENT_AT_FIELDS = {
    Source.HL7: "MSH-7",
    Source.FHIR: "meta.lastUpdated (or the notification's timestamp)",
    Source.CALCOM: "createdAt",
    Source.CALENDLY: "created_at",
}
"""Where each format carries the sender's time, to name it when a translator does not."""
_DATABASE_FAILED: tuple[type[BaseException], ...] = (*DATABASE_FAILED, UnavailableError)
"""The intake database failed, or its pool could not be opened."""
DEFAULT_FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of our clock a sender's timestamp may be before the message is refused."""

logger = logging.getLogger(__name__)


class ReceiptKind(StrEnum):
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

SUCCESSES = frozenset({ReceiptKind.APPLIED, ReceiptKind.UNCHANGED, ReceiptKind.RECORDED})
FINAL_KINDS = frozenset({ReceiptKind.APPLIED, ReceiptKind.UNCHANGED, ReceiptKind.RECORDED,
                         ReceiptKind.REFUSED, ReceiptKind.MALFORMED})
"""Answers the same message can never change: replayed to a repeated delivery. The others
(not found, bad input, unavailable) depend on state or configuration and are worked out
again when the message comes again."""


@dataclass(frozen=True)
class Receipt:
    """What intake did with one message: a kind and one line for the sender (no PII)."""

    kind: ReceiptKind
    message: str
    session_id: str | None = None
    started: bool = False
    """True when this message started the session's workflow."""
    reject: bool = False
    """Refuse the message as unprocessable (HL7 AR) although it was readable, e.g. it holds
    bytes that cannot be stored."""
    final: bool | None = None
    """Whether a repeated delivery gets this answer again; None: by its kind."""
    warning: bool = False
    """Accepted, but part of it was not applied (HL7: an ERR of severity W on the AA)."""

    @property
    def is_final(self) -> bool:
        """Replayed to a repeated delivery (see FINAL_KINDS)."""
        return self.kind in FINAL_KINDS if self.final is None else self.final


Render = Callable[[Incoming, Receipt], tuple[int, str]]
"""An entry point's answer for an outcome: (HTTP status, body) -- the body an ACK or JSON."""

RECEIPT_KINDS = {
    ResultKind.STARTED: ReceiptKind.APPLIED,
    ResultKind.APPLIED: ReceiptKind.APPLIED,
    ResultKind.ALREADY_SCHEDULED: ReceiptKind.UNCHANGED,
    ResultKind.REFUSED: ReceiptKind.REFUSED,
    ResultKind.NOT_FOUND: ReceiptKind.NOT_FOUND,
    ResultKind.BAD_INPUT: ReceiptKind.BAD_INPUT,
    ResultKind.UNAVAILABLE: ReceiptKind.UNAVAILABLE,
}
"""The receipt a use case's result gives a scheduler, whichever format it came in."""


class Intake:
    """Executes translated messages once, by their delivery key."""

    def __init__(self, app: Application, *,
                 future_skew: timedelta = DEFAULT_FUTURE_SKEW,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._app = app
        self._tables: IntakeStore | None = None
        self._future_skew = future_skew
        self._clock = clock

    async def _store(self) -> IntakeStore:
        """The intake tables, over the application's pool (opened on first use)."""
        if self._tables is None:
            self._tables = await self._app.intake_store()
        return self._tables

    async def stored(self, source: Source, key: str) -> StoredAnswer | None:
        """The first answer to a delivery, if it was answered before and is final.

        None for a key PostgreSQL cannot hold (it was never stored): `answer` refuses it.
        """
        if unstorable(key):
            return None
        first = await (await self._store()).answer(source.value, key)
        return first if first is not None and first.final else None

    async def answer(self, incoming: Incoming, render: Render) -> StoredAnswer:
        """The answer to a delivered message: the first one stored, else a new one.

        When PostgreSQL fails, the answer says "unavailable" (HTTP 503, HL7 AR) and nothing
        is stored, so the sender's retry is processed as new.
        """
        try:
            return await self._answer(incoming, render)
        except VALUE_REFUSED as error:
            # The database refused a value (class 22), not a failure: the message is bad,
            # and sending it again cannot help. Not stored (it could not be).
            outcome = Receipt(ReceiptKind.BAD_INPUT,
                              f"a value in the message cannot be stored "
                              f"({type(error).__name__}); nothing done", reject=True)
            status, body = render(incoming, outcome)
            return StoredAnswer(status, body, outcome.kind.value)
        except _DATABASE_FAILED as error:
            outcome = Receipt(ReceiptKind.UNAVAILABLE,
                              f"the intake database failed ({type(error).__name__}); "
                              "send the message again")
            status, body = render(incoming, outcome)
            return StoredAnswer(status, body, outcome.kind.value)

    async def _answer(self, incoming: Incoming, render: Render) -> StoredAnswer:
        where = unstorable_field(incoming)
        if where is not None:
            # Refused before any query: PostgreSQL cannot hold the value, and the answer
            # must not be "the database failed" (the sender would resend it forever).
            outcome = Receipt(
                ReceiptKind.BAD_INPUT,
                f"{where}: holds a NUL byte or an unpaired surrogate, which cannot be "
                "stored; nothing done", reject=True, final=True)
            status, body = render(incoming, outcome)
            if unstorable(incoming.key) or unstorable(body):
                return StoredAnswer(status, body, outcome.kind.value)
            return await self._remember(incoming, outcome, status, body)
        first = await (await self._store()).answer(incoming.source.value, incoming.key)
        if first is not None and first.final:
            return first
        outcome = await self.execute(incoming)
        status, body = render(incoming, outcome)
        if outcome.kind is ReceiptKind.UNAVAILABLE:
            return StoredAnswer(status, body, outcome.kind.value)
        if outcome.kind is ReceiptKind.NOT_FOUND and isinstance(incoming.command, NoShow):
            logger.warning("intake: a no-show for a session that does not exist (source %s)",
                           incoming.source.value)
        return await self._remember(incoming, outcome, status, body)

    async def _remember(self, incoming: Incoming, outcome: Receipt, status: int,
                        body: str) -> StoredAnswer:
        session = outcome.session_id
        return await (await self._store()).remember(
            source=incoming.source.value, key=incoming.key,
            session_id=None if session is None or unstorable(session) else session,
            command=type(incoming.command).__name__.lower(), outcome=outcome.kind.value,
            sent_at=incoming.sent_at, status=status, answer=body, final=outcome.is_final,
            feed=incoming.feed_name)

    async def execute(self, incoming: Incoming) -> Receipt:
        """Carry out the message's command under the delivery rules (no duplicate check)."""
        command = incoming.command
        if isinstance(command, Refuse):
            kind = ReceiptKind.MALFORMED if command.malformed else ReceiptKind.BAD_INPUT
            return Receipt(kind, command.reason, command.session_id)
        received = self._clock()
        ahead = self._ahead(incoming, received, command.session_id)
        if ahead is not None:
            return ahead
        if command.session_id is not None and (
                incoming.previous_ids or incoming.source in ALIASED_SOURCES):
            session = await (await self._store()).resolve(
                incoming.source.value, (*incoming.previous_ids, command.session_id))
            command = _renamed(command, session)
        if isinstance(command, Record):
            return Receipt(ReceiptKind.RECORDED, _recorded(command.note, command.session_id),
                           command.session_id)
        assert not isinstance(command, Refuse)  # returned above; renaming keeps the type
        if not isinstance(command, CheckIn | Attended):
            # A check-in is never dropped for its sender time: the client came, and taking
            # it for stale would send a client who is there into outreach.
            stale = await self._stale(command.session_id, incoming)
            if stale is not None:
                return stale
        outcome = await self._apply(command)
        if outcome.kind in {ReceiptKind.APPLIED, ReceiptKind.UNCHANGED}:
            start = command.start if isinstance(command, Book) else None
            await (await self._store()).applied(command.session_id, sent_at=None, start=start)
            if incoming.sent_at is not None:
                # Never newer than our receipt: a sender clock ahead of ours cannot make
                # later, correct messages look old.
                await (await self._store()).sent(command.session_id, incoming.feed_name,
                                       min(incoming.sent_at, received))
        return outcome

    def _ahead(self, incoming: Incoming, received: datetime,
               session_id: str | None) -> Receipt | None:
        """A refusal when the sender dates the message beyond the allowed skew ahead."""
        sent_at = incoming.sent_at
        if sent_at is None or sent_at <= received + self._future_skew:
            return None
        field = incoming.sent_at_field or SENT_AT_FIELDS[incoming.source]
        ahead = sent_at - received
        return Receipt(
            ReceiptKind.BAD_INPUT,
            f"{field}: {sent_at.isoformat()} is {_duration(ahead)} ahead of the receiver's "
            f"clock ({received.isoformat(timespec='seconds')}); more than the "
            f"{_duration(self._future_skew)} allowed: nothing done (check the sender's "
            "clock, then send the message again)", session_id)

    async def _stale(self, session_id: str, incoming: Incoming) -> Receipt | None:
        sent_at = incoming.sent_at
        if sent_at is None:
            return None
        newest = await (await self._store()).last_sent(session_id, incoming.feed_name)
        if newest is None or sent_at >= newest:
            return None
        field = incoming.sent_at_field or SENT_AT_FIELDS[incoming.source]
        return Receipt(
            ReceiptKind.RECORDED,
            f"session {session_id}: recorded, not applied: this message is older than one "
            f"already applied from the same sender ({field} {sent_at.isoformat()} is before "
            f"{newest.isoformat()}); resend it with a current timestamp if it is meant to "
            "apply", session_id)

    async def _apply(self, command: SessionCommand) -> Receipt:
        if isinstance(command, Book):
            return await self._book(command)
        if isinstance(command, CheckIn):
            return _from(await self._app.check_in(command.session_id,
                                                  CheckInMessage(at=command.at)))
        if isinstance(command, Attended):
            result = await self._app.check_in(command.session_id, CheckInMessage())
            return _from(result, note="the session took place: recorded as a check-in")
        if isinstance(command, NoShow):
            return await self._no_show(command)
        return await self._cancel(command)

    async def _no_show(self, command: NoShow) -> Receipt:
        session = command.session_id
        lifecycle = await self._lifecycle(session)
        if isinstance(lifecycle, Receipt):
            return lifecycle
        if lifecycle is not Lifecycle.RUNNING:
            return self._not_running(session, lifecycle, "the scheduler's no-show")
        return Receipt(
            ReceiptKind.RECORDED,
            f"session {session}: the scheduler's no-show is recorded; the session declares "
            "its own no-show when the grace period passes without a check-in (an immediate "
            "no-show is not supported by the workflow yet)", session)

    async def _lifecycle(self, session_id: str) -> Lifecycle | Receipt:
        """Whether the session's workflow runs, has closed or never existed."""
        lifecycle = await self._app.lifecycle(session_id)
        if isinstance(lifecycle, Result):
            return Receipt(ReceiptKind.UNAVAILABLE, lifecycle.message, session_id)
        return lifecycle

    @staticmethod
    def _not_running(session: str, lifecycle: Lifecycle, what: str) -> Receipt:
        if lifecycle is Lifecycle.CLOSED:
            return Receipt(ReceiptKind.NOT_FOUND,
                           f"session {session} is already closed (workflow "
                           f"{workflow_id_for(session)}): {what} is not applied", session)
        return Receipt(ReceiptKind.NOT_FOUND,
                       f"no session {session} (workflow {workflow_id_for(session)}): {what} "
                       "is refused; book the session first", session)

    async def _unless_closed(self, session: str, outcome: Receipt) -> Receipt:
        """An `unchanged` answer holds only while the session runs.

        A closed session refuses changes (as it refuses a new booking), even those that
        would move nothing.
        """
        if outcome.kind is not ReceiptKind.UNCHANGED:
            return outcome
        lifecycle = await self._lifecycle(session)
        if isinstance(lifecycle, Receipt):
            return lifecycle
        if lifecycle is Lifecycle.RUNNING:
            return outcome
        return self._not_running(session, lifecycle, "the change")

    async def _book(self, command: Book) -> Receipt:
        session = command.session_id
        known = await (await self._store()).session(session)
        if known is not None and known.cancelled_unbooked:
            return Receipt(ReceiptKind.RECORDED,
                           f"session {session}: recorded, not started: it was cancelled "
                           "before this booking arrived", session)
        same_start = known is not None and known.start == command.start
        booking = None if command.booking is None else self._prepared(command)
        if booking is None or (same_start and isinstance(booking, Receipt)):
            # Without a booking only the start can be applied; at a known start that can no
            # longer be booked (it has begun), nothing is compared and nothing moves.
            moved = await self._move_only(command, known.start if known else None)
            return await self._unless_closed(session, moved)
        if isinstance(booking, Receipt):
            return booking
        result = await self._app.schedule_booking(booking)
        if result.kind is ResultKind.STARTED:
            return Receipt(ReceiptKind.APPLIED, result.message, session, started=True)
        if result.kind is ResultKind.REFUSED and result.differing_fields:
            return await self._unless_closed(session,
                                             await self._booking_differs(command, result))
        return await self._unless_closed(session, _from(result))

    async def _book_by_ref(self, command: Book) -> Receipt:
        """A new session whose message lacks the client's contact points.

        The client directory completes it from the ref (`Application.schedule`, as for a
        ref-only booking from any entry point), or it is refused as incomplete.
        """
        assert command.by_ref is not None
        session = command.session_id
        result = await self._app.schedule(command.by_ref)
        if result.kind is ResultKind.STARTED:
            return Receipt(ReceiptKind.APPLIED, result.message, session, started=True)
        if result.kind is ResultKind.BAD_INPUT and result.message.startswith("client.ref:"):
            return Receipt(ReceiptKind.BAD_INPUT,
                           f"session {session}: not started: {command.incomplete}", session)
        return _from(result)

    def _prepared(self, command: Book) -> SessionBooking | Receipt:
        """The booking ready to start (practice protocol, time scale), or why not."""
        assert command.booking is not None
        session = command.session_id
        data = command.booking.model_dump(mode="json", exclude_unset=True)
        data["session_id"] = session
        try:
            return self._app.prepare(data)
        except BadBookingError as error:
            return Receipt(ReceiptKind.BAD_INPUT, f"session {session}: {error}", session)

    async def _booking_differs(self, command: Book, held: Result) -> Receipt:
        """A resent booking that differs from the one held.

        Move the start if that is what changed; other differences (client details) are
        named and not applied.
        """
        session = command.session_id
        others = [field for field in held.differing_fields if field != "start"]
        note = (f"; NOT applied (the client's details belong to the client directory: change "
                f"them there): {', '.join(others)}") if others else ""
        if "start" not in held.differing_fields:
            return Receipt(ReceiptKind.UNCHANGED,
                           f"session {session}: already scheduled at this start{note}",
                           session, warning=bool(others))
        moved = await self._app.reschedule(
            session, Reschedule(start=command.start, reason=command.reason[:200]))
        return replace(_from(moved, note=f"moved to {command.start.isoformat()}{note}"),
                       warning=bool(others))

    async def _move_only(self, command: Book, known_start: datetime | None) -> Receipt:
        """A message without what a booking needs can still move a session that exists."""
        session = command.session_id
        if known_start is not None and known_start == command.start:
            return Receipt(ReceiptKind.UNCHANGED,
                           f"session {session}: the start did not change; nothing moved",
                           session)
        result = await self._app.reschedule(
            session, Reschedule(start=command.start, reason=command.reason[:200]))
        if result.kind is ResultKind.NOT_FOUND and _never_existed(result):
            if command.by_ref is not None:
                return await self._book_by_ref(command)
            return Receipt(ReceiptKind.BAD_INPUT,
                           f"session {session}: not started: {command.incomplete}", session)
        return _from(result, note=f"moved to {command.start.isoformat()}")

    async def _cancel(self, command: Cancel) -> Receipt:
        session = command.session_id
        reason = command.reason or ("entered in error" if command.entered_in_error else "")
        result = await self._app.cancel(session, Cancellation(reason=reason[:200]))
        if result.kind is ResultKind.NOT_FOUND and _never_existed(result):
            await (await self._store()).applied(session, sent_at=None, cancelled_unbooked=True)
            return Receipt(ReceiptKind.RECORDED,
                           f"session {session}: cancelled before its booking arrived; "
                           "recorded, and a later booking for it will not be started", session)
        note = "entered in error: cancelled" if command.entered_in_error else ""
        return _from(result, note=note)


def unstorable(text: str) -> bool:
    """Whether PostgreSQL's text type cannot hold this (NUL, or an unpaired surrogate)."""
    return "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text)


def unstorable_field(incoming: Incoming) -> str | None:
    """The first field of the message's command that PostgreSQL could not store, or None."""
    if unstorable(incoming.key):
        return "the message id"
    for name, value in _strings(incoming.command, ""):
        if unstorable(value):
            return name
    return None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path or "value", value
    elif isinstance(value, BaseModel):
        yield from _strings(value.model_dump(mode="json"), path)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif hasattr(value, "__dataclass_fields__"):
        for field in fields(value):
            yield from _strings(getattr(value, field.name),
                                f"{path}.{field.name}" if path else field.name)


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 120:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


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


def _from(result: Result, *, note: str = "") -> Receipt:
    kind = RECEIPT_KINDS[result.kind]
    message = f"{result.message} ({note})" if note and kind in SUCCESSES else result.message
    return Receipt(kind, message, result.session_id)
