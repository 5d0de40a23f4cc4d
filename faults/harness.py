"""One scenario's live stack: servers, worker, the channel's records, and what to watch.

Every scenario gets its own Temporal database file, PostgreSQL data directory and worker, so
one scenario's broken server cannot spoil the next one's counts. The harness books sessions
through the service's own scheduling path, plays the clients' part (check-ins, call-backs),
and reads the trails, the channel's records and the workflows when the scenario is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
from aiohttp import web
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from faults.clients import (
    CALL_BACK_SECONDS,
    Script,
    ScriptedSession,
    called_back,
    check_in,
    scripted_session,
)
from faults.count import Effect, NoticeRecord, SessionRecord
from faults.processes import ApiProcess, Postgres, TemporalServer, WorkerProcess
from faults.receiver import PracticeReceiver, serve
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application.contact_keys import ContactKeys
from missed_session.audit.cli import ReplaySetup, replay_session
from missed_session.audit.verify import describe, verify_session
from missed_session.channels import webhook
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.codec.encryption import EncryptionCodec, new_key, parse_key
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    ClientResponse,
    Outcome,
    ResponseChannel,
    SessionResult,
    workflow_id_for,
)
from missed_session.domain.roster_file import parse_roster
from missed_session.store.audit import AuditStore
from missed_session.store.database import open_pool
from missed_session.store.notices import RosterStore, notice_trails
from missed_session.temporal.client import data_converter
from missed_session.temporal.scheduling import schedule_session
from worker import WORKFLOW_RUNNER
from workflows.notice import NoticeWorkflow
from workflows.session import SessionWorkflow

ChannelName = Literal["simulated", "webhook"]
KEY_ID = "faults-1"
POLL = 0.05
"""Seconds between looks at the trail while waiting for a step to kill at."""
START_IN = timedelta(seconds=6)
"""Head start before the sessions start, so that a kill can land before it."""


@functools.cache
def quiet_runtime() -> Runtime:
    """The harness's Temporal runtime, with the SDK core's warnings off.

    Its retry warnings while a server is down are the fault itself, not news; errors show.
    """
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


@dataclass(frozen=True)
class Row:
    """One audit row as the watcher sees it (read straight from PostgreSQL)."""

    session_id: str
    sequence: int
    event_type: str


@dataclass
class Harness:
    """The processes of one scenario, and the harness's own view of them."""

    directory: Path
    channel: ChannelName
    time_scale: float
    temporal: TemporalServer = field(init=False)
    postgres: Postgres = field(init=False)
    worker: WorkerProcess = field(init=False)
    client: Client = field(init=False)
    pool: asyncpg.Pool = field(init=False)
    receiver: PracticeReceiver | None = None
    with_api: bool = False
    """Run the HTTP API (and its kept-text deliverer) as a process of its own too."""
    callbacks_via_api: bool = False
    """The clients' call-backs (webhook channel) reach the service through the API's
    `/responded`, as a practice's phone system posts them, rather than straight to Temporal."""
    api: ApiProcess | None = None
    api_token: str = ""
    webhook_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    callback_answers: list[CallbackAnswer] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """What a scenario's fault gathered for its check (the check itself is pure)."""
    """Each call-back the API answered: status and how long the sender waited."""
    contact_keys: ContactKeys | None = None
    sessions: list[ScriptedSession] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What each fault saw and did, in words, for the report."""
    _front_desk: list[asyncio.Task[None]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _began: float = field(default_factory=time.monotonic)

    def note(self, text: str) -> None:
        """Add a line to the scenario's notes, stamped with the seconds since its start."""
        self.notes.append(f"t+{time.monotonic() - self._began:.0f}s {text}")

    # -- bringing it up and down -------------------------------------------------------

    async def start(self) -> None:
        """Start PostgreSQL, the dev server, the receiver (webhook) and the worker."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.postgres = Postgres(self.directory / "postgres")
        self.temporal = TemporalServer(self.directory / "temporal.db",
                                       self.directory / "temporal.log")
        await asyncio.gather(self.postgres.start(), self.temporal.start())
        keys = {KEY_ID: new_key()}
        parsed = {k: parse_key(k, v) for k, v in keys.items()}
        converter = data_converter(EncryptionCodec(parsed, KEY_ID))
        self.contact_keys = ContactKeys(parsed, KEY_ID)
        self.client = await Client.connect(self.temporal.address, data_converter=converter,
                                           runtime=quiet_runtime())
        self.pool = await open_pool(self.postgres.url, min_size=0, max_size=4)
        env = {
            "MSR_TEMPORAL_ADDRESS": self.temporal.address,
            "MSR_DATABASE_URL": self.postgres.url,
            "MSR_ENCRYPTION_KEYS": json.dumps(keys),
            "MSR_TASK_QUEUE": "faults",
            "MSR_METRICS_PORT": "0",
            "MSR_DATA_DIR": str(self.directory / "worker-data"),
            "MSR_LOG_FORMAT": "json",
            "MSR_LOG_LEVEL": "info",
            "MSR_CHANNEL": self.channel,
        }
        if self.channel == "webhook":
            secret = self.webhook_secret
            self.receiver = PracticeReceiver(secret.encode(), self._called_back)
            self._runner, url = await serve(self.receiver)
            env |= {"MSR_WEBHOOK_URL": url, "MSR_WEBHOOK_SECRET": secret}
        self.worker = WorkerProcess(env, self.directory / "worker.log")
        await self.worker.start()
        if self.with_api:
            self.api_token = new_token()
            tokens = {Scope.SCHEDULER.value: [digest(self.api_token)]}
            self.api = ApiProcess(env | {"MSR_API_TOKENS": json.dumps(tokens),
                                         "MSR_WEBHOOK_SECRET": self.webhook_secret},
                                  self.directory / "api.log")
            await self.api.start()

    async def stop(self) -> None:
        """Stop everything this harness started, whatever state the fault left it in."""
        for task in self._front_desk:
            task.cancel()
        await asyncio.gather(*self._front_desk, return_exceptions=True)
        if self.api is not None:
            await self.api.stop(signal.SIGTERM)
        if hasattr(self, "worker"):
            await self.worker.stop(signal.SIGTERM)
        if hasattr(self, "pool"):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)
        if self.receiver is not None:  # first: it lets requests it hangs on go
            await self.receiver.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if hasattr(self, "temporal"):
            await self.temporal.stop(signal.SIGTERM)
        if hasattr(self, "postgres"):
            await self.postgres.shutdown()

    async def load_roster(self, practice_file: str) -> None:
        """Load a practice file's roster and notice rules, as `starter.py roster load` does.

        From then on every notice a session gives climbs its on-call ladder (a notice
        workflow per notice, sent through the scenario's channel).
        """
        practice = parse_roster(practice_file, "faults roster")
        await RosterStore(self.pool).load(practice.roster, practice.notices, "faults roster")

    async def _attend(self, session: ScriptedSession) -> None:
        if not await check_in(self.client, session):
            self.note(f"the check-in of {session.session_id} came after its session had closed")

    async def _called_back(self, session_id: str) -> None:
        if self.callbacks_via_api and self.api is not None:
            await self._called_back_through_api(session_id)
            return
        if not await called_back(self.client, session_id):
            self.note(f"the call-back of {session_id} came after its session had closed")

    async def _called_back_through_api(self, session_id: str) -> None:
        """POST the call-back as a phone system does: wait for an answer, retry a 503."""
        body = ClientResponse(channel=ResponseChannel.CALL, responder="client",
                              note="returned the call after the voicemail")
        assert self.api is not None
        async with httpx.AsyncClient(base_url=self.api.url, timeout=60, headers={
                "Authorization": f"Bearer {self.api_token}"}) as http:
            for _ in range(60):
                began = time.monotonic()
                try:
                    response = await http.post(f"/sessions/{session_id}/responded",
                                               content=body.model_dump_json(),
                                               headers={"content-type": "application/json"})
                except httpx.HTTPError as error:
                    self.callback_answers.append(CallbackAnswer(
                        session_id, 0, time.monotonic() - began, type(error).__name__, began))
                    await asyncio.sleep(1.0)
                    continue
                waited = time.monotonic() - began
                self.callback_answers.append(CallbackAnswer(
                    session_id, response.status_code, waited, response.json().get("message"),
                    began))
                self.note(f"call-back of {session_id} answered {response.status_code} "
                          f"after {waited:.1f} s")
                if response.status_code != 503:
                    return
                await asyncio.sleep(1.0)

    async def post_text(self, phone: str, body: str, message_id: str) -> httpx.Response:
        """A client's inbound text, signed as the webhook channel's receiver signs it."""
        assert self.api is not None
        content = json.dumps({"from": phone, "body": body, "id": message_id}).encode()
        timestamp = str(int(time.time()))
        async with httpx.AsyncClient(base_url=self.api.url, timeout=60) as http:
            return await http.post("/inbound/webhook", content=content, headers={
                "content-type": "application/json", webhook.TIMESTAMP_HEADER: timestamp,
                webhook.SIGNATURE_HEADER: webhook.sign(self.webhook_secret.encode(),
                                                       timestamp, content)})

    # -- the sessions --------------------------------------------------------------------

    async def book(self, scripts: list[Script], prefix: str,
                   expected: Mapping[Script, Outcome] | None = None) -> None:
        """Script each client's channel behaviour, then schedule through the service's path.

        `expected`: the scripts whose correct outcome the scenario's fault changes.
        """
        start = datetime.now(UTC).replace(microsecond=0) + START_IN
        phone = SimulatedPhone(self.pool)
        for index, script in enumerate(scripts):
            session = scripted_session(prefix, index, script, start=start,
                                       time_scale=self.time_scale,
                                       expected=(expected or {}).get(script))
            await self._script_channel(phone, session)
            contact_key = (None if self.contact_keys is None
                           else self.contact_keys.for_booking(session.phone))
            await schedule_session(self.client, session.booking, task_queue="faults",
                                   now=datetime.now(UTC), contact_key=contact_key)
            self.sessions.append(session)
            if script is Script.ATTENDS:
                self._front_desk.append(asyncio.create_task(self._attend(session)))

    async def _script_channel(self, phone: SimulatedPhone, session: ScriptedSession) -> None:
        number = session.phone
        contact = session.booking.client.emergency_contact
        answers = session.script is Script.ANSWERS
        if self.receiver is not None:
            self.receiver.answers[number] = "answered" if answers else "no_answer"
            if session.script is Script.CALLS_BACK:
                self.receiver.calls_back_after[number] = CALL_BACK_SECONDS
            return
        if session.script is Script.CALLS_BACK:
            await phone.script(number, Behaviour.CALLS_BACK, CALL_BACK_SECONDS)
        else:
            await phone.script(number,
                               Behaviour.ANSWERS if answers else Behaviour.NO_ANSWER)
        if contact is not None:
            await phone.script(contact.phone, Behaviour.ANSWERS)

    @property
    def first_start(self) -> datetime:
        """When the earliest session starts."""
        return min(session.booking.start for session in self.sessions)

    # -- watching ------------------------------------------------------------------------

    async def rows(self) -> list[Row]:
        """Every audit row so far; none while PostgreSQL is unreachable."""
        try:
            records = await asyncio.wait_for(self.pool.fetch(
                "SELECT session_id, sequence, event_type FROM audit_events"), 5)
        except Exception:  # PostgreSQL is down or restarting: nothing seen
            return []
        return [Row(r["session_id"], r["sequence"], r["event_type"]) for r in records]

    async def effects(self) -> dict[str, list[Effect]]:
        """What the channel did, per session, from the channel's own records."""
        found: dict[str, list[Effect]] = {s.session_id: [] for s in self.sessions}
        if self.receiver is not None:
            for delivery in self.receiver.deliveries:
                found.setdefault(delivery.session_id, []).append(
                    Effect(delivery.key, delivery.kind))
            return found
        try:
            records = await asyncio.wait_for(self.pool.fetch(
                "SELECT session_id, idempotency_key, kind FROM sim_phone_log"), 5)
        except Exception:  # PostgreSQL is down or restarting: nothing seen
            return found
        for record in records:
            found.setdefault(record["session_id"], []).append(
                Effect(record["idempotency_key"], record["kind"]))
        return found

    async def until(self, what: str, condition: Callable[[], Awaitable[bool]],
                    within: float = 120.0) -> bool:
        """Poll `condition` until it holds; False (and a note) if it never did."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await condition():
                return True
            await asyncio.sleep(POLL)
        self.note(f"gave up waiting for {what} after {within:.0f} s")
        return False

    async def until_event(self, event_type: AuditEventType, within: float = 120.0) -> bool:
        """Wait for the first row of `event_type` in any of the scenario's trails."""
        async def seen() -> bool:
            return any(row.event_type == event_type.value for row in await self.rows())

        return await self.until(event_type.value, seen, within)

    async def until_effect(self, kind: str, within: float = 120.0) -> bool:
        """Wait for the channel's first record of `kind` (call, voicemail, message)."""
        async def seen() -> bool:
            effects = await self.effects()
            return any(effect.kind == kind for found in effects.values() for effect in found)

        return await self.until(f"a {kind} from the channel", seen, within)

    async def describe_trails(self) -> str:
        """The trails' last rows, in short, for a note made at the moment of a fault."""
        last: dict[str, Row] = {}
        for row in await self.rows():
            if row.session_id not in last or row.sequence > last[row.session_id].sequence:
                last[row.session_id] = row
        counted = {s: r.event_type for s, r in sorted(last.items()) if "/" not in s}
        return ", ".join(f"{s.rsplit('-', 1)[-1]}:{t}" for s, t in counted.items()) or "no rows"

    # -- killing and restarting -------------------------------------------------------

    async def kill_worker(self, why: str, down: float = 0.0) -> None:
        """SIGKILL the worker, note what the trails showed, restart it after `down` s."""
        await self.worker.stop(signal.SIGKILL)
        self.note(f"worker SIGKILLed {why}; trails: {await self.describe_trails()}")
        if down:
            await asyncio.sleep(down)
        await self.worker.start()

    async def ensure_api(self) -> None:
        """Start the API again if it is not running (after a kill)."""
        if self.api is not None and not self.api.running:
            await self.api.start()

    async def ensure_worker(self) -> None:
        """Restart a worker that exited on its own during a fault (and say so)."""
        if not self.worker.running:
            code = self.worker.process.returncode if self.worker.process else None
            self.note(f"worker had exited by itself (exit {code}); restarted")
            await self.worker.start()

    # -- the end -------------------------------------------------------------------------

    async def settle(self, within: float) -> None:
        """Wait until every session's workflow has ended, or `within` seconds."""
        deadline = time.monotonic() + within
        pending = {session.session_id for session in self.sessions}
        while pending and time.monotonic() < deadline:
            for session_id in list(pending):
                with contextlib.suppress(RPCError):
                    handle = self.client.get_workflow_handle(workflow_id_for(session_id))
                    status = (await handle.describe()).status
                    if status is not WorkflowExecutionStatus.RUNNING:
                        pending.discard(session_id)
            if pending:
                if not self.worker.running:
                    await self.ensure_worker()
                await asyncio.sleep(0.5)

    async def records(self) -> list[SessionRecord]:
        """Per session: status, result, trail, effects, chain verification and replay."""
        store = AuditStore(self.pool)
        setup = ReplaySetup([SessionWorkflow], WORKFLOW_RUNNER)
        effects = await self.effects()
        found: list[SessionRecord] = []
        for session in self.sessions:
            handle = self.client.get_workflow_handle(workflow_id_for(session.session_id),
                                                     result_type=SessionResult)
            status = (await handle.describe()).status
            outcome: Outcome | None = None
            failure: str | None = None
            if status is WorkflowExecutionStatus.COMPLETED:
                outcome = (await handle.result()).outcome
            elif status is WorkflowExecutionStatus.FAILED:
                failure = await _failure(handle)
            trail: list[AuditEvent] = await store.trail(session.session_id)
            chain = await verify_session(store, session.session_id)
            problems = [] if chain.ok else [describe(chain)]
            if failure is not None:
                problems.append(f"failed with: {failure}")
            replay = await replay_session(self.client, store, setup, session.session_id)
            if not replay.ok:
                problems.append(replay.describe())
            found.append(SessionRecord(
                session_id=session.session_id, expected=session.expected,
                status=status.name if status is not None else "UNKNOWN", outcome=outcome,
                trail=trail, effects=effects.get(session.session_id, []),
                chain_ok=chain.ok and chain.rows > 0, replay_ok=replay.ok, problems=problems,
            ))
        return found

    async def notice_records(self) -> list[NoticeRecord]:
        """Every notice of the scenario's sessions: its trail, chain verified, history replayed.

        A notice that waits for an acknowledgment is still running: its history replays as
        far as it goes.
        """
        store = AuditStore(self.pool)
        setup = ReplaySetup([SessionWorkflow, NoticeWorkflow], WORKFLOW_RUNNER)
        found: list[NoticeRecord] = []
        for session in self.sessions:
            trails = await notice_trails(self.pool, session.session_id)
            for key, trail in sorted(trails.items()):
                chain = await verify_session(store, key)
                replay = await replay_session(self.client, store, setup, key)
                problems = [] if chain.ok else [describe(chain)]
                if not replay.ok:
                    problems.append(replay.describe())
                found.append(NoticeRecord(key=key, trail=trail,
                                          chain_ok=chain.ok and chain.rows > 0,
                                          replay_ok=replay.ok, problems=problems))
        return found


async def _failure(handle: WorkflowHandle[Any, SessionResult]) -> str:
    """The failed workflow's error and its cause, one line."""
    try:
        await handle.result()
    except WorkflowFailureError as error:
        cause = error.cause
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return " ".join(f"{type(cause).__name__}: {cause}".split())[:300]
    return "no failure"


@dataclass(frozen=True)
class CallbackAnswer:
    """What the API answered a client's call-back, and how long the sender waited for it."""

    session_id: str
    status: int
    """The HTTP status (0: no answer at all, the connection failed)."""
    seconds: float
    message: str | None
    at: float = 0.0
    """When it was sent (`time.monotonic()`)."""


@contextlib.asynccontextmanager
async def harness(directory: Path, channel: ChannelName, time_scale: float, *,
                  with_api: bool = False, callbacks_via_api: bool = False,
                  ) -> AsyncIterator[Harness]:
    """A started harness, stopped on the way out."""
    live = Harness(directory, channel, time_scale, with_api=with_api,
                   callbacks_via_api=callbacks_via_api)
    try:
        await live.start()
        yield live
    finally:
        await live.stop()
