"""A local simulated phone, texts and email: the default channel for demos and tests.

It records every call, voicemail, text, email and message in PostgreSQL, as a real channel
would record what it sent, and behaves per number (or address) as a demo or test scripts
it: the client answers, does not answer, the number is invalid, or the client calls back
some time after a voicemail. Call-backs are delivered by :class:`CallbackDispatcher`, the
way a practice's phone system would tell the service about an inbound call: through
Temporal, on time, whether or not our PostgreSQL is reachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

import asyncpg
import structlog
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from missed_session.channels.base import InvalidContactError
from missed_session.domain.models import CallResult
from missed_session.lifecycle import wait_set
from missed_session.store.simulated_phone import Placed, SimulatedPhoneStore


class Behaviour(StrEnum):
    """How a simulated number behaves."""

    ANSWERS = "answers"
    NO_ANSWER = "no_answer"
    INVALID_NUMBER = "invalid_number"
    CALLS_BACK = "calls_back"
    RINGS_OUT = "rings_out"
    """Nobody answers and nothing can be left (busy, no voicemail box): a voicemail or a
    message to this number is not delivered."""


UNDELIVERED = "not_delivered"
"""The log's result for a voicemail or message the number could not take."""


class SimulatedPhone:
    """A phone channel that dials nobody and remembers everything."""

    def __init__(self, pool: asyncpg.Pool, callbacks: CallbackScheduler | None = None) -> None:
        """A phone that tells `callbacks` of each call-back as its voicemail is left.

        The worker's :class:`CallbackDispatcher`; without one, the row alone says it is owed.
        """
        self._store = SimulatedPhoneStore(pool)
        self._callbacks = callbacks

    async def script(self, phone: str, behaviour: Behaviour,
                     callback_seconds: int | None = None) -> None:
        """Decide how `phone` behaves from now on (unscripted numbers do not answer)."""
        if (behaviour is Behaviour.CALLS_BACK) != (callback_seconds is not None):
            msg = "callback_seconds is required for calls_back and only for it"
            raise ValueError(msg)
        await self._store.script(phone, behaviour.value, callback_seconds)

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring the number; a repeated key returns the first call's result."""
        behaviour, _ = await self._behaviour(to)
        if behaviour is Behaviour.INVALID_NUMBER:
            await self._log(key, session_id, "call", to, None, "invalid_number")
            raise InvalidContactError("the client's number is not in service")
        result = CallResult.ANSWERED if behaviour is Behaviour.ANSWERS else CallResult.NO_ANSWER
        return CallResult(await self._log(key, session_id, "call", to, None, result.value))

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Record the voicemail; a scripted call-back becomes due after it.

        The call-back is written with the voicemail, in one transaction (so that a worker
        that restarts still owes it), and handed to the dispatcher once committed. A
        repeated key returns the first try's outcome; one call-back per session.
        """
        behaviour, callback_seconds = await self._behaviour(to)
        outcome = UNDELIVERED if behaviour is Behaviour.RINGS_OUT else "left"
        recorded, due_at = await self._store.log_voicemail(
            Placed(key, session_id, "voicemail", to, text, outcome),
            float(callback_seconds or 0) if behaviour is Behaviour.CALLS_BACK else None,
        )
        if due_at is not None and self._callbacks is not None:  # committed: keep it on time
            self._callbacks.schedule(session_id, due_at)
        return CallResult.NO_ANSWER if recorded == UNDELIVERED else CallResult.ANSWERED

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Record a message (used for the emergency contact).

        A repeated key returns the first try's outcome.
        """
        behaviour, _ = await self._behaviour(to)
        if behaviour is Behaviour.INVALID_NUMBER:
            await self._log(key, session_id, "message", to, text, "invalid_number")
            raise InvalidContactError("the emergency contact's number is not in service")
        outcome = UNDELIVERED if behaviour is Behaviour.RINGS_OUT else "delivered"
        recorded = await self._log(key, session_id, "message", to, text, outcome)
        return CallResult.NO_ANSWER if recorded == UNDELIVERED else CallResult.ANSWERED

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Record a text; an invalid number is refused like a call to it."""
        await self._send(key, session_id, "text", to, text)

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Record an email; an address scripted `invalid_number` bounces."""
        await self._send(key, session_id, "email", to, f"{subject}\n\n{body}")

    async def _send(self, key: str, session_id: str, kind: str, to: str, body: str) -> None:
        behaviour, _ = await self._behaviour(to)
        if behaviour is Behaviour.INVALID_NUMBER:
            await self._log(key, session_id, kind, to, body, "invalid_number")
            raise InvalidContactError(f"the client's {kind} address does not reach anyone")
        await self._log(key, session_id, kind, to, body, "sent")

    async def placed(self, session_id: str) -> list[asyncpg.Record]:
        """Everything placed for a session, oldest first (for tests and the demo)."""
        return await self._store.placed(session_id)

    async def _behaviour(self, phone: str) -> tuple[Behaviour, int | None]:
        script = await self._store.script_of(phone)
        if script is None:
            return Behaviour.NO_ANSWER, None
        return Behaviour(script.behaviour), script.callback_seconds

    async def _log(self, key: str, session_id: str, kind: str, to: str, body: str | None,
                   result: str) -> str:
        return await self._store.log(Placed(key, session_id, kind, to, body, result))


Deliver = Callable[[str], Awaitable[bool | None]]
"""Tells the session workflow that the client called back (by session id).

It returns once the session has taken the call-back (True or None) or can never take it
(False: the session closed without it, or refused it); it raises to be tried again. It must
be idempotent per session (the worker's sends a Temporal update with the fixed id
:data:`CALLBACK_UPDATE_ID`, which Temporal deduplicates, until the update is completed): a
worker that died after delivering, before PostgreSQL recorded it, makes its successor
deliver it again.
"""

CALLBACK_UPDATE_ID = "simulated-phone-callback"
"""The update id of a session's one call-back: Temporal answers a repeat with the first."""


class CallbackScheduler(Protocol):
    """What the phone tells when a voicemail makes a call-back due."""

    def schedule(self, session_id: str, due_at: datetime) -> None:
        """The client of `session_id` calls back at `due_at`."""
        ...


class CallbackDispatcher:
    """Delivers the simulated clients' call-backs when they fall due, through Temporal only.

    A real client's call-back reaches the service through the provider's webhook and a
    Temporal update, whatever our own PostgreSQL is doing; so does this one. The phone hands
    each call-back to :meth:`schedule` as it leaves the voicemail, and the dispatcher keeps it
    in memory and delivers it on time. PostgreSQL only keeps the call-back for a worker that
    restarts (the row is written with the voicemail) and learns that it was delivered when it
    is reachable again; a follower reads the rows still owed (a dead worker's) and schedules
    them too. So an outage of PostgreSQL delays nothing but that bookkeeping, and the
    follower's backoff (doubling up to `max_backoff_seconds`) never holds a call-back back.

    Nothing it meets may stop it: errors are logged (the error's type only, never a
    session's data) and retried, a delivery every `retry_seconds` (doubling up to
    `max_retry_seconds`: Temporal coming back must not find the call-back asleep). A
    call-back counts as settled once delivered, or once Temporal said it never can be (the
    session is over, or refused it). Each is delivered at most once per dispatcher, and
    `deliver` is idempotent across dispatchers, so nothing is delivered twice; nothing is
    lost, since the row stays owed until a settled delivery is recorded.
    """

    def __init__(self, pool: asyncpg.Pool, deliver: Deliver, *, poll_seconds: float = 0.5,
                 max_backoff_seconds: float = 30.0, retry_seconds: float = 0.25,
                 max_retry_seconds: float = 2.0) -> None:
        self._store = SimulatedPhoneStore(pool)
        self._deliver = deliver
        self._poll_seconds = poll_seconds
        self._max_backoff = max_backoff_seconds
        self._retry_seconds = retry_seconds
        self._max_retry = max_retry_seconds
        self._due: dict[str, datetime] = {}
        """Call-backs owed and not yet handed to a delivery, by session id."""
        self._settled: set[str] = set()
        """Delivered (or never deliverable) by this dispatcher, or in flight: never again."""
        self._unrecorded: set[str] = set()
        """Settled here, not yet marked delivered in PostgreSQL."""
        self._changed = asyncio.Event()
        self._settled_here = asyncio.Event()
        """Set when a call-back settled here waits to be recorded: the follower wakes."""
        self._log = structlog.get_logger(__name__)
        """Its own: a module's logger bound once under another logging set-up (a test's)
        would keep it."""

    def schedule(self, session_id: str, due_at: datetime) -> None:
        """Deliver `session_id`'s call-back at `due_at` (again: the earlier time holds)."""
        if session_id in self._settled:
            return
        earlier = self._due.get(session_id)
        self._due[session_id] = due_at if earlier is None else min(earlier, due_at)
        self._changed.set()

    async def run(self) -> None:
        """Deliver on time and keep PostgreSQL's rows in step, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow_store())
            while True:  # hand each call-back that fell due to a delivery of its own
                self._changed.clear()
                now = datetime.now(UTC)
                for session_id, due_at in sorted(self._due.items(), key=lambda item: item[1]):
                    if due_at <= now:
                        del self._due[session_id]
                        self._settled.add(session_id)
                        group.create_task(self._deliver_when_possible(session_id, due_at))
                wait = min(self._due.values(), default=None)
                timeout = None if wait is None else max(0.0, (wait - now).total_seconds())
                await wait_set(self._changed, timeout)

    async def _deliver_when_possible(self, session_id: str, due_at: datetime) -> None:
        """One call-back, retried through outages until it is settled."""
        delay = self._retry_seconds
        while True:
            try:
                delivered = await self._settle(session_id)
                break
            except Exception as error:  # Temporal unreachable: try again soon
                self._log.warning("callback_delivery_failed",
                                  error_type=type(error).__name__, retry_in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry)
        if delivered:  # the session has answered it (it took it into its history earlier)
            after = (datetime.now(UTC) - due_at).total_seconds()
            self._log.info("callback_delivered", session_id=session_id,
                           answered_seconds_after_due=round(after, 1))
        self._unrecorded.add(session_id)
        self._settled_here.set()

    async def _follow_store(self) -> None:
        """Record settled call-backs and pick up owed ones, surviving every error."""
        delay = self._poll_seconds
        while True:
            try:
                await self._sync()
            except Exception as error:  # an outage must not end the loop
                delay = min(delay * 2, self._max_backoff)
                self._log.warning("callback_dispatch_failed",
                                  error_type=type(error).__name__, retry_in_seconds=delay)
                await asyncio.sleep(delay)
                continue
            if delay != self._poll_seconds:
                self._log.info("callback_dispatch_recovered")
                delay = self._poll_seconds
            await self._until_settled_here(self._poll_seconds)

    async def _until_settled_here(self, seconds: float) -> None:
        """Sleep `seconds`, or less if a call-back settled here waits to be recorded."""
        await wait_set(self._settled_here, seconds)
        self._settled_here.clear()

    async def _sync(self) -> None:
        """Mark what was settled here; schedule what PostgreSQL says is still owed."""
        for session_id in sorted(self._unrecorded):
            await self._store.delivered(session_id)
            self._unrecorded.discard(session_id)
        for session_id, due_at in await self._store.owed():
            self.schedule(session_id, due_at)

    async def deliver_due(self) -> int:
        """Deliver, once, every call-back PostgreSQL says is due; returns how many were settled.

        An outage (PostgreSQL, Temporal) propagates after what was settled so far.
        """
        due = await self._store.due()
        for session_id in due:
            await self._settle(session_id)
            await self._store.delivered(session_id)
        return len(due)

    async def _settle(self, session_id: str) -> bool:
        """Deliver (True); a session that can never take it is logged and settled (False)."""
        try:
            took = await self._deliver(session_id)
        except Exception as error:
            if not _never_deliverable(error):
                raise
            self._log.warning("callback_undeliverable", session_id=session_id,
                              error_type=type(error).__name__)
            return False
        if took is False:
            self._log.warning("callback_undeliverable", session_id=session_id,
                              error_type="SessionClosed")
            return False
        return True


def _never_deliverable(error: Exception) -> bool:
    """Temporal's answer that retrying cannot help: no such session, or it refused."""
    if isinstance(error, WorkflowUpdateFailedError):
        return True
    return isinstance(error, RPCError) and error.status in NEVER_DELIVERABLE


NEVER_DELIVERABLE = frozenset({RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT})
"""A session that is over (or never existed) cannot be told about a call-back."""
