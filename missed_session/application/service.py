"""The application: every use case with the connections it needs, opened on first use.

Entry points build one `Application` from the settings (or hand it the client and pool
they already hold) and call its use cases; they never connect to Temporal or PostgreSQL
themselves. Audit reads need only PostgreSQL and scheduling only Temporal, so each
connection is made when a use case first needs it, and a server that cannot be reached is
an `unavailable` result, not an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from types import TracebackType

import asyncpg
import structlog
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from missed_session.application import audit_trail
from missed_session.application import notices as notice_cases
from missed_session.application.bookings import BadBookingError, prepare_booking
from missed_session.application.caring import CaringContacts
from missed_session.application.clients import STORE_ERRORS, ClientUseCases, sends_details
from missed_session.application.contact_keys import ContactKeys
from missed_session.application.results import Lifecycle, Result, ResultKind, bad_input
from missed_session.application.sessions import InFlight, Sessions, utc_now
from missed_session.config import Settings
from missed_session.domain.models import (
    Cancellation,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    Reschedule,
    SessionBooking,
    TextReply,
    workflow_id_for,
)
from missed_session.domain.practice import PracticeProtocols
from missed_session.practice_file import load_consent_defaults, load_practice_file
from missed_session.store.audit import AuditStore
from missed_session.store.database import database_url, open_pool, owner_database_url
from missed_session.store.intake import IntakeStore
from missed_session.store.notices import RosterStore
from missed_session.temporal.client import connect

log = structlog.get_logger(__name__)

NOTICE_LOOKUP_SECONDS = 5.0
"""How long a decision waits to learn which notices it acknowledges: a database that does
not answer by then delays no decision (the notices then climb on as before)."""

_CONNECTION_PROBLEMS = (
    ("connection refused", "connection refused: nothing listens there"),
    ("timed out", "timed out"),
    ("deadline", "timed out"),
    ("dns", "the host name does not resolve"),
    ("failed to lookup", "the host name does not resolve"),
    ("certificate", "TLS: the server's certificate was not accepted"),
    ("tls", "TLS handshake failed"),
)


def connection_problem(error: BaseException) -> str:
    """What went wrong connecting, in a few words, not the transport's error dump."""
    text = str(error)
    lowered = text.lower()
    for needle, problem in _CONNECTION_PROBLEMS:
        if needle in lowered:
            return problem
    first = " ".join(text.split())
    return first if len(first) <= 120 else first[:117] + "..."


class UnavailableError(RuntimeError):
    """Temporal or PostgreSQL could not be reached; the message says which and why."""


class Application:
    """The use cases of the service, for every entry point."""

    def __init__(self, settings: Settings, *, client: Client | None = None,
                 pool: asyncpg.Pool | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self._client = client
        self._pool = pool
        self._own_pool = pool is None
        self._clock = clock
        self._practice: PracticeProtocols | None = None
        self._practice_loaded = False
        self._contact_keys: ContactKeys | None = None
        self._lock = asyncio.Lock()
        self.in_flight: InFlight | None = None
        """Set by an entry point that stays up (the HTTP API): client messages not yet taken
        within a sender's patience go on being sent there (`sessions.InFlight`)."""

    async def __aenter__(self) -> Application:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pool this application opened (a pool handed in stays open)."""
        if self._own_pool and self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- connections ------------------------------------------------------------------

    @property
    def temporal_client(self) -> Client | None:
        """The Temporal client if it is connected already (None: not yet)."""
        return self._client

    async def temporal(self) -> Client:
        """The Temporal client, connected on first use; raises UnavailableError."""
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self.settings)
                except (RuntimeError, OSError) as error:  # OSError: the embedded key file
                    msg = (f"cannot connect to Temporal at {self.settings.temporal_address}: "
                           f"{connection_problem(error)} (check MSR_TEMPORAL_ADDRESS)")
                    raise UnavailableError(msg) from None
            return self._client

    async def store(self) -> AuditStore:
        """The audit store, its pool opened on first use; raises UnavailableError."""
        return AuditStore(await self.pool())

    async def pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool, opened on first use; raises UnavailableError."""
        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await open_pool(
                        database_url(self.settings),
                        owner_url=owner_database_url(self.settings), min_size=1, max_size=4)
                except (OSError, TimeoutError, asyncpg.PostgresError,
                        asyncpg.InterfaceError) as error:
                    # The URL is left out of the message: it may carry a password.
                    setting = ("MSR_DATABASE_URL" if self.settings.database_url
                               else f"the embedded PostgreSQL under MSR_DATA_DIR "
                                    f"({self.settings.data_dir})")
                    msg = (f"cannot open the audit database: {connection_problem(error)} "
                           f"(check {setting})")
                    raise UnavailableError(msg) from None
            return self._pool

    def practice(self) -> PracticeProtocols | None:
        """The practice file's protocols, read once; raises PracticeFileError."""
        if not self._practice_loaded:
            path = self.settings.practice_file
            self._practice = None if path is None else load_practice_file(path)
            self._practice_loaded = True
        return self._practice

    async def sessions(self) -> Sessions:
        """The Temporal-facing use cases; raises UnavailableError."""
        client = await self.temporal()
        if self._contact_keys is None:
            self._contact_keys = ContactKeys.of(self.settings)
        return Sessions(client, task_queue=self.settings.task_queue,
                        contact_keys=self._contact_keys, clock=self._clock,
                        in_flight=self.in_flight)

    async def caring(self) -> CaringContacts | None:
        """The caring-contacts use cases (Temporal and PostgreSQL); None when unreachable."""
        try:
            client = await self.temporal()
            await self.store()
        except UnavailableError:
            return None
        assert self._pool is not None  # opened by store()
        return CaringContacts(client, self._pool, task_queue=self.settings.task_queue,
                              clock=self._clock, time_scale=self.settings.time_scale)

    async def intake_store(self) -> IntakeStore:
        """The intake tables (answers, ordering, aliases); raises UnavailableError."""
        return IntakeStore(await self.pool())

    async def clients(self) -> ClientUseCases:
        """The client-directory use cases (PostgreSQL); raises UnavailableError."""
        await self.store()
        assert self._pool is not None  # opened by store()
        return ClientUseCases(self._pool,
                              defaults=load_consent_defaults(self.settings.practice_file))

    # -- use cases ----------------------------------------------------------------------
    # The session verbs below forward to `Sessions` through `_with_sessions`, which turns an
    # unreachable Temporal into an `unavailable` result: every entry point (31 call sites in
    # 8 modules, and tests that patch them on `Application`) gets that for free, so they stay.

    def prepare(self, data: object) -> SessionBooking:
        """A booking from a scheduler's data, ready to start; raises BadBookingError."""
        return prepare_booking(data, time_scale=self.settings.time_scale,
                               practice=self.practice(), now=self._clock())

    async def schedule(self, data: object) -> Result:
        """Validate a booking sent as data and start its session (once).

        A booking that names only its client's ref is completed from the client
        directory (an unknown ref is bad input naming it); one with the client's details
        updates the directory once it is valid.
        """
        session_id = data.get("session_id") if isinstance(data, dict) else None
        sent_details = sends_details(data)
        try:
            clients = await self.clients()
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error))
        resolved = await clients.resolve_booking(data)
        if isinstance(resolved, Result):
            return resolved
        try:
            booking = self.prepare(resolved)
        except BadBookingError as error:
            return bad_input(str(error), error.problems,
                             session_id if isinstance(session_id, str) else None)
        try:
            await clients.record_booking(booking, sent_details=sent_details)
        except STORE_ERRORS as error:
            return Result(ResultKind.UNAVAILABLE,
                          f"the client directory failed ({type(error).__name__}): nothing "
                          "was booked; it is safe to send again",
                          booking.session_id)
        return await self.schedule_booking(booking)

    async def resolve_booking(self, data: object) -> object | Result:
        """`data` with its client from the directory when it names only the ref.

        For entry points that prepare bookings themselves (the CLI's import): the same
        resolution `schedule` applies, so a ref-only booking means one thing everywhere.
        """
        if sends_details(data):
            return data
        try:
            clients = await self.clients()
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error))
        return await clients.resolve_booking(data)

    async def schedule_booking(self, booking: SessionBooking) -> Result:
        """Start a prepared booking's session (once)."""
        return await self._with_sessions(lambda sessions: sessions.schedule(booking))

    async def check_in(self, session_id: str, check_in: CheckIn | None = None) -> Result:
        """The client arrived or joined."""
        return await self._with_sessions(
            lambda sessions: sessions.check_in(session_id, check_in or CheckIn()))

    async def cancel(self, session_id: str, cancellation: Cancellation) -> Result:
        """The session will not take place."""
        return await self._with_sessions(lambda sessions: sessions.cancel(session_id,
                                                                          cancellation))

    async def reschedule(self, session_id: str, reschedule: Reschedule) -> Result:
        """Move the session's start."""
        return await self._with_sessions(lambda sessions: sessions.reschedule(session_id,
                                                                              reschedule))

    async def respond(self, session_id: str, response: ClientResponse) -> Result:
        """The client got back in touch."""
        return await self._with_sessions(lambda sessions: sessions.respond(session_id,
                                                                           response))

    async def text_reply(self, session_id: str, reply: TextReply, *,
                         message_id: str | None = None) -> Result:
        """The client texted back (`message_id`: the provider's, to deduplicate)."""
        return await self._with_sessions(lambda sessions: sessions.text_reply(
            session_id, reply, message_id=message_id))

    async def decide(self, session_id: str, kind: DecisionKind,
                     decision: ClinicianDecision) -> Result:
        """A clinician's decision: mark_safe, escalate_now, stand_down or add_note.

        A decision the session took also acknowledges the session's notices sent to the
        deciding clinician that nobody had acknowledged before it (for every entry point:
        a clinician acting on a session has its alerts in hand; the climb stops). The
        acknowledgments are best effort: the decision stands whatever becomes of them.
        """
        before = await self._unacknowledged(session_id, decision.clinician_id)
        result = await self._with_sessions(
            lambda sessions: sessions.decide(session_id, kind, decision))
        if not result.ok or not before:
            return result
        try:
            done = await notice_cases.acknowledge_on_decision(
                await self.temporal(), before, decision.clinician_id, kind)
        except (UnavailableError, RPCError) as error:
            log.warning("decision_acknowledgments_failed", session_id=session_id,
                        error=type(error).__name__)
            return result
        if not done:
            return result
        return replace(result, message=f"{result.message}; acknowledged: {', '.join(done)}")

    async def _unacknowledged(self, session_id: str, clinician_id: str) -> list[str]:
        """The session's notices sent to the clinician and unacknowledged (none if unknown)."""
        try:
            async with asyncio.timeout(NOTICE_LOOKUP_SECONDS):
                return await notice_cases.unacknowledged_sent_to(
                    await self.pool(), session_id, clinician_id)
        except (UnavailableError, OSError, TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as error:
            log.warning("decision_notices_unread", session_id=session_id,
                        error=type(error).__name__)
            return []

    async def on_roster(self, clinician_id: str) -> Result:
        """Whether `clinician_id` is on the roster in force: `applied`, else `not_found`.

        A credential of someone taken off the roster stops working at once, without being
        revoked; a database that cannot be read is `unavailable`.
        """
        try:
            current = await RosterStore(await self.pool()).current()
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            return Result(ResultKind.UNAVAILABLE,
                          f"the roster could not be read: {type(error).__name__}")
        if current is None or current.roster is None \
                or current.roster.clinician(clinician_id) is None:
            return Result(ResultKind.NOT_FOUND,
                          f"clinician {clinician_id} is not on the roster in force")
        return Result(ResultKind.APPLIED, f"clinician {clinician_id} is on the roster")

    async def status(self, session_id: str) -> Result:
        """Where the session is in the protocol."""
        return await self._with_sessions(lambda sessions: sessions.status(session_id))

    async def lifecycle(self, session_id: str) -> Lifecycle | Result:
        """Whether the session's workflow runs, has closed or never existed.

        A Temporal that cannot be reached or answers with an error is an `unavailable`
        result naming the session.
        """
        try:
            client = await self.temporal()
            description = await client.get_workflow_handle(
                workflow_id_for(session_id)).describe()
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return Lifecycle.NONE
            return Result(ResultKind.UNAVAILABLE,
                          f"Temporal could not be asked about session {session_id}: "
                          f"{error.status.name if error.status else 'error'}", session_id)
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error), session_id)
        if description.status is WorkflowExecutionStatus.RUNNING:
            return Lifecycle.RUNNING
        return Lifecycle.CLOSED

    async def audit(self, session_id: str) -> Result:
        """The session's audit trail (PostgreSQL only)."""
        try:
            store = await self.store()
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error), session_id)
        try:
            return await audit_trail.read_trail(store, session_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            return Result(ResultKind.UNAVAILABLE, f"the audit database failed: {error}",
                          session_id)

    async def _with_sessions(self, use: Callable[[Sessions], Awaitable[Result]]) -> Result:
        try:
            sessions = await self.sessions()
        except UnavailableError as error:
            return Result(ResultKind.UNAVAILABLE, str(error))
        return await use(sessions)
