"""The session use cases over Temporal: schedule, messages, clinician decisions, status.

Every entry point (CLI, HTTP API, FHIR, HL7, webhooks, inbound SMS) calls these and maps the
`Result` to its own answer. Workflows are addressed by name: this layer never imports the
workflow code, so entry points stay free of the sandbox's restrictions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from missed_session.application.bookings import differing_fields, out_of_range
from missed_session.application.contact_keys import CONTACT_KEY, ContactKeys
from missed_session.application.results import Problem, Result, ResultKind, bad_input
from missed_session.application.updates import Sent, Stage, send_update
from missed_session.domain import decisions
from missed_session.domain.intake import BookingRejectedError
from missed_session.domain.models import (
    Cancellation,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    Reschedule,
    SessionBooking,
    SessionState,
    TextReply,
    workflow_id_for,
)
from missed_session.temporal import search_attributes
from missed_session.temporal.scheduling import Scheduled, schedule_session

log = structlog.get_logger(__name__)

WORKFLOW_PREFIX = workflow_id_for("")
"""A session's workflow id is this prefix and its session id."""
QUERY_TIMEOUT = timedelta(seconds=10)
"""A query needs a running worker; without one, say so rather than hang."""
SENDER_PATIENCE = timedelta(seconds=3)
"""How long a client's message sent over HTTP is held for its session before the sender is
answered (a phone system's webhook gives up after a few seconds, and retries as a new
message)."""
OPERATOR_PATIENCE = timedelta(seconds=60)
"""How long an operator's command (or any message where nothing keeps it afterwards) is
sent before it is answered `unavailable`."""
KEPT_FOR = timedelta(hours=24)
"""How long a message answered "kept" goes on being sent in the process that kept it."""


class InFlight:
    """Client messages the sender was answered "kept" for, still being sent in this process.

    The HTTP API holds one (its lifespan closes it): a message its session did not take
    within `SENDER_PATIENCE` (a worker stalled on PostgreSQL, Temporal restarting) goes on
    being sent under the same update id until the session takes it. Held in memory only:
    a process that dies loses what it still holds (the sender was answered 202, so it will
    not send again); the kept inbound texts, kept in PostgreSQL, are not in this set.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Sent]] = set()

    def keep(self, session_id: str, name: str, sending: Coroutine[Any, Any, Sent]) -> None:
        """Go on `sending` in the background; log how it ended."""
        task = asyncio.create_task(sending, name=f"in-flight-{name}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[Sent]) -> None:
            self._tasks.discard(finished)
            if finished.cancelled():
                log.warning("kept_message_abandoned", session_id=session_id, update=name)
                return
            error = finished.exception()
            stage = type(error).__name__ if error is not None else finished.result().stage
            log.info("kept_message_sent", session_id=session_id, update=name, stage=stage)

        task.add_done_callback(done)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, grace: float = 5.0) -> None:
        """Give what is still in flight `grace` seconds, then cancel it."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class Message(StrEnum):
    """The news a session's workflow accepts from outside, by its handler's name."""

    CHECK_IN = "check_in"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"
    CLIENT_RESPONDED = "client_responded"
    TEXT_REPLY = "text_reply"


def utc_now() -> datetime:
    """The wall clock, aware (the default clock of the use cases)."""
    return datetime.now(UTC)


class Sessions:
    """The use cases that talk to the session workflows, over one Temporal client."""

    def __init__(self, client: Client, *, task_queue: str,
                 contact_keys: ContactKeys | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 in_flight: InFlight | None = None) -> None:
        self._client = client
        self._task_queue = task_queue
        self._contact_keys = contact_keys
        self._clock = clock
        self._in_flight = in_flight

    # -- schedule ---------------------------------------------------------------------

    async def schedule(self, booking: SessionBooking) -> Result:
        """Start a prepared booking's workflow once (see `bookings.prepare_booking`).

        The same id again is compared, never run twice.
        The identical booking answers `already_scheduled`; a different one under the same
        id is `refused` naming the differing fields (a correction is a reschedule or a
        cancel and a new booking, never silently dropped).
        """
        session_id = booking.session_id
        where = f"session {session_id} (workflow {booking.workflow_id})"
        try:
            phone = booking.client.phone  # None: an email-only client has no contact key
            contact_key = (None if self._contact_keys is None or phone is None
                           else self._contact_keys.for_booking(phone))
            scheduled, _ = await schedule_session(
                self._client, booking, task_queue=self._task_queue, now=self._clock(),
                contact_key=contact_key,
            )
        except BookingRejectedError as error:  # the grace period ran out meanwhile
            return bad_input(str(error), (Problem((error.field,), error.problem),), session_id)
        except RPCError as error:
            return _unavailable(session_id, error)
        if scheduled is Scheduled.STARTED:
            return Result(ResultKind.STARTED, f"scheduled {where}", session_id)
        try:
            held = await self._held_booking(booking.workflow_id)
        except RPCError as error:
            return _unavailable(session_id, error)
        differing = () if held is None else differing_fields(held, booking)
        if differing:
            return Result(
                ResultKind.REFUSED,
                f"{where} is already scheduled with a different booking; differing fields: "
                f"{', '.join(differing)} (send a reschedule, or cancel and book a new id)",
                session_id, differing_fields=differing,
            )
        return Result(ResultKind.ALREADY_SCHEDULED,
                      f"{where} is already scheduled; nothing changed", session_id)

    async def booking(self, session_id: str) -> SessionBooking | None:
        """The booking a session runs now (None if there is no such session)."""
        try:
            return await self._held_booking(workflow_id_for(session_id))
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def _held_booking(self, workflow_id: str) -> SessionBooking | None:
        """The booking the workflow runs now: its input, moved by accepted reschedules.

        Read from the history (the booking is encrypted there, and the client decodes it)
        so no worker is needed and nothing outside Temporal holds a second copy. A
        reschedule counts once it is in the history: an update's acceptance is there when
        `execute_update` returns; a signal sent while a workflow task runs is written when
        that task completes.
        """
        handle = self._client.get_workflow_handle(workflow_id)
        converter = self._client.data_converter
        booking: SessionBooking | None = None
        start: datetime | None = None
        async for event in handle.fetch_history_events(page_size=200):
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                attributes = event.workflow_execution_started_event_attributes
                [booking] = await converter.decode(attributes.input.payloads,
                                                   [SessionBooking])
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signaled = event.workflow_execution_signaled_event_attributes
                if signaled.signal_name == Message.RESCHEDULE:
                    [moved] = await converter.decode(signaled.input.payloads, [Reschedule])
                    start = moved.start
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                request = event.workflow_execution_update_accepted_event_attributes \
                    .accepted_request
                if request.input.name == Message.RESCHEDULE:
                    [moved] = await converter.decode(request.input.args.payloads, [Reschedule])
                    start = moved.start
        if booking is not None and start is not None:
            booking = booking.model_copy(update={"start": start})
        return booking

    # -- news from the scheduling system and the client ---------------------------------

    async def check_in(self, session_id: str, check_in: CheckIn) -> Result:
        """The client arrived or joined."""
        problem = None if check_in.at is None else out_of_range(check_in.at)
        if problem is not None:
            return bad_input(f"at: {problem}", (Problem(("at",), problem),), session_id)
        return await self._send(session_id, Message.CHECK_IN, check_in, from_client=True)

    async def cancel(self, session_id: str, cancellation: Cancellation) -> Result:
        """The session will not take place."""
        return await self._send(session_id, Message.CANCEL, cancellation)

    async def reschedule(self, session_id: str, reschedule: Reschedule) -> Result:
        """Move the session's start."""
        problem = out_of_range(reschedule.start)
        if problem is not None:
            return bad_input(f"start: {problem}", (Problem(("start",), problem),), session_id)
        return await self._send(session_id, Message.RESCHEDULE, reschedule)

    async def respond(self, session_id: str, response: ClientResponse) -> Result:
        """The client (or someone for them) got back in touch."""
        return await self._send(session_id, Message.CLIENT_RESPONDED, response,
                                from_client=True)

    async def text_reply(self, session_id: str, reply: TextReply, *,
                         message_id: str | None = None) -> Result:
        """The client texted back; an opt-out keyword opts out, anything else responds.

        `message_id` (the provider's id of the text) makes a redelivered text one update:
        Temporal answers a repeated update id with the first update's outcome.
        """
        return await self._send(session_id, Message.TEXT_REPLY, reply, update_id=message_id,
                                from_client=True)

    async def deliver_text(self, session_id: str, reply: TextReply, *, update_id: str,
                           wait: timedelta) -> Result:
        """Hand an inbound text to its session, sending it for at most `wait`.

        Delivered means the session holds it: its handler answered, or the update is in the
        session's history (accepted: the session applies it when it can). Not in the history
        within `wait` (no worker polls, Temporal unreachable, or a restart dropped it while
        merely admitted) is `unavailable`: the caller keeps the text and sends it again with
        the same `update_id`, which Temporal answers with the first update's outcome, so the
        text is never applied twice. A closed session whose history holds the update took it
        before it closed: delivered, not gone.
        """
        sent = await send_update(self._client, workflow_id_for(session_id),
                                 Message.TEXT_REPLY.value, reply, update_id=update_id,
                                 wait=wait)
        return await self._result(session_id, Message.TEXT_REPLY, sent)

    async def open_sessions(self, phone: str, *, wait: timedelta | None = None) -> list[str]:
        """The session ids of running sessions booked for this phone number.

        With `wait`, a lookup that takes longer (Temporal unreachable: its client retries)
        raises TimeoutError.
        """
        if wait is None:
            return await self._open_sessions(phone)
        async with asyncio.timeout(wait.total_seconds()):
            return await self._open_sessions(phone)

    async def _open_sessions(self, phone: str) -> list[str]:
        if self._contact_keys is None:
            return []
        keys = self._contact_keys.for_lookup(phone)
        if not all(CONTACT_KEY.fullmatch(key) for key in keys):  # never a quoted injection
            return []
        wanted = ", ".join(f"'{key}'" for key in keys)
        query = (f"{search_attributes.CLIENT_CONTACT_KEY.name} IN ({wanted}) "
                 "AND ExecutionStatus = 'Running'")
        found = [execution.id.removeprefix(WORKFLOW_PREFIX)
                 async for execution in self._client.list_workflows(query)]
        return sorted(found)

    async def _send(self, session_id: str, message: Message | DecisionKind, payload: BaseModel,
                    *, update_id: str | None = None, from_client: bool = False) -> Result:
        """Deliver news or a decision as the workflow's update of that name (or a refusal).

        The update id is chosen once, here, and every try sends it again (`send_update`):
        a try that Temporal merely admitted before a restart is sent again, never applied
        twice. A client's message (`from_client`) is answered within `SENDER_PATIENCE`:
        once it is in the session's history the session has it (its handler may wait for
        PostgreSQL); one not yet taken then is kept sending in this process, when the
        application keeps messages in flight (the HTTP API), and the sender is told so.
        """
        update_id = update_id or f"{message.value}-{uuid.uuid4().hex}"
        workflow_id = workflow_id_for(session_id)
        if not from_client:
            sent = await send_update(self._client, workflow_id, message.value, payload,
                                     update_id=update_id, wait=OPERATOR_PATIENCE)
            return await self._result(session_id, message, sent)
        patience = SENDER_PATIENCE if self._in_flight is not None else OPERATOR_PATIENCE
        sent = await send_update(self._client, workflow_id, message.value, payload,
                                 update_id=update_id, wait=patience)
        if sent.stage is Stage.NO_ANSWER and self._in_flight is not None:
            self._in_flight.keep(session_id, message.value, send_update(
                self._client, workflow_id, message.value, payload, update_id=update_id,
                wait=KEPT_FOR))
            return Result(ResultKind.APPLIED,
                          f"session {session_id}: {message.value} kept: it reaches the "
                          "session as soon as the session can take it", session_id,
                          data={"delivery": "kept", "update_id": update_id})
        return await self._result(session_id, message, sent)

    async def _result(self, session_id: str, message: Message | DecisionKind,
                      sent: Sent) -> Result:
        """What sending did, as a use case's result."""
        name = message.value
        held = {Stage.COMPLETED: f"{name} {sent.answer}",
                Stage.ACCEPTED: f"{name} accepted (the session applies it as soon as it "
                                "can write its trail)",
                Stage.TAKEN: f"{name} accepted before the session closed"}
        if sent.stage in held:
            return Result(ResultKind.APPLIED, f"session {session_id}: {held[sent.stage]}",
                          session_id, data={"delivery": sent.stage.value})
        if sent.stage is Stage.REFUSED:
            return Result(ResultKind.REFUSED, f"session {session_id}: {sent.reason}",
                          session_id)
        if sent.stage is Stage.GONE:
            return await self._not_found(session_id)
        if sent.reason in {"UpdateLost", "TimeoutError",
                           "WorkflowUpdateRPCTimeoutOrCancelledError", "none"}:
            return _no_answer(session_id)
        return Result(ResultKind.UNAVAILABLE,
                      f"Temporal could not take the message ({sent.reason}); send it again",
                      session_id)

    # -- clinician decisions -----------------------------------------------------------

    async def decide(self, session_id: str, kind: DecisionKind,
                     decision: ClinicianDecision) -> Result:
        """Record a clinician's decision; the workflow's validator may refuse it."""
        missing = decisions.missing_field(kind, decision)
        if missing is not None:
            return bad_input(missing, session_id=session_id)
        return await self._send(session_id, kind, decision)

    # -- status ------------------------------------------------------------------------

    async def status(self, session_id: str) -> Result:
        """Where the session is in the protocol (the workflow's `state` query)."""
        handle = self._client.get_workflow_handle(workflow_id_for(session_id))
        try:
            state = await handle.query("state", result_type=SessionState,
                                       rpc_timeout=QUERY_TIMEOUT)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return Result(ResultKind.NOT_FOUND, _no_session(session_id), session_id)
            return Result(ResultKind.UNAVAILABLE,
                          f"could not ask session {session_id} (is a worker running?): "
                          f"{error}", session_id)
        except WorkflowQueryFailedError as error:
            return Result(ResultKind.UNAVAILABLE,
                          f"session {session_id} could not answer: {error}", session_id)
        return Result(ResultKind.APPLIED, f"session {session_id} is {state.status.value}",
                      session_id, state=state)

    async def _not_found(self, session_id: str) -> Result:
        """Tell a session that never existed from one that has already closed."""
        workflow_id = workflow_id_for(session_id)
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return Result(ResultKind.NOT_FOUND, _no_session(session_id), session_id)
        status = description.status.name.lower() if description.status else "closed"
        return Result(ResultKind.NOT_FOUND,
                      f"session {session_id} is already closed ({status}, workflow "
                      f"{workflow_id})", session_id)


def _no_session(session_id: str) -> str:
    return f"no session {session_id} (workflow {workflow_id_for(session_id)})"


def _unavailable(session_id: str, error: RPCError) -> Result:
    return Result(ResultKind.UNAVAILABLE, f"Temporal refused the request: {error}", session_id)


def _no_answer(session_id: str) -> Result:
    return Result(ResultKind.UNAVAILABLE,
                  f"session {session_id} did not answer in time (is a worker running?)",
                  session_id)
