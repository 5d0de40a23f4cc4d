"""Replay for audits: the recorded histories replay with today's workflow code, a changed
workflow does not, and `audit replay` cross-checks a history against the PostgreSQL trail.

The histories in tests/histories/ come from `scripts/record_histories.py` (encrypted with
the tests' key). When a deliberate change to the workflow makes them fail, re-record them
with that script; see docs/audit.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

import starter
from activities.outreach import Sender
from missed_session.audit import cli as audit_cli
from missed_session.audit.replay import (
    HistoryActivity,
    cross_check,
    history_activities,
    replay_failure,
)
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    Outcome,
    workflow_id_for,
)
from missed_session.store.audit import AuditStore
from tests.support.audit_replay import (
    BRANCH_FILES,
    HISTORIES,
    ChangedSessionWorkflow,
    load,
    trail_from_history,
)
from tests.support.factories import booking
from tests.support.servers import TEST_CONVERTER, TEST_KEYS
from worker import WORKFLOW_RUNNER, new_worker
from workflows.session import SessionWorkflow

# -- the recorded histories -------------------------------------------------------------------


def test_every_outcome_has_a_recorded_history() -> None:
    outcomes = json.loads((HISTORIES / "outcomes.json").read_text())
    assert sorted(outcomes) == sorted(path.stem for path in BRANCH_FILES)
    assert set(outcomes.values()) == {outcome.value for outcome in Outcome}


@pytest.mark.parametrize("path", BRANCH_FILES, ids=[path.stem for path in BRANCH_FILES])
async def test_recorded_history_replays_with_todays_workflow(path: Path) -> None:
    replayer = Replayer(workflows=[SessionWorkflow], data_converter=TEST_CONVERTER,
                        workflow_runner=WORKFLOW_RUNNER)
    assert await replay_failure(replayer, load(path)) is None


@pytest.mark.parametrize("path", BRANCH_FILES, ids=[path.stem for path in BRANCH_FILES])
async def test_recorded_history_cross_checks_with_its_own_trail(path: Path) -> None:
    """No false alarms: every branch's side effects are documented by the events it records."""
    history = load(path)
    trail = await trail_from_history(history)
    assert cross_check(await history_activities(history, TEST_CONVERTER), trail) == []


AWAITING_CLINICIAN = {
    "awaiting_clinician_escalate_now": ["clinician_decision", "escalation_sent"],
    "awaiting_clinician_stood_down": ["clinician_decision"],
    "awaiting_clinician_timed_out": ["clinician_wait_timed_out"],
}
"""Histories recorded with the `await-clinician` patch: what ended each wait."""
BLOCKED_BEFORE_THE_PATCH = ["unreachable_no_consent", "unreachable_no_emergency_contact",
                            "emergency_contact_unreachable", "escalate_now_without_consent"]
"""Histories recorded before it: blocked, and closed at once (they replay that way)."""


@pytest.mark.parametrize(("name", "ended_by"), AWAITING_CLINICIAN.items())
async def test_awaiting_clinician_histories_take_the_patched_branch(
    name: str, ended_by: list[str],
) -> None:
    trail = [event.event_type.value
             for event in await trail_from_history(load(HISTORIES / f"{name}.json"))]
    waited = trail.index("awaiting_clinician")
    assert trail[waited - 1] == "escalation_blocked"
    assert trail[waited + 1:] == [*ended_by, "plan_created", "closed"]


@pytest.mark.parametrize("name", BLOCKED_BEFORE_THE_PATCH)
async def test_blocked_histories_from_before_the_patch_never_awaited_a_clinician(
    name: str,
) -> None:
    trail = [event.event_type.value
             for event in await trail_from_history(load(HISTORIES / f"{name}.json"))]
    assert "awaiting_clinician" not in trail


async def test_a_high_risk_history_nobody_acknowledged_awaited_and_climbed_again() -> None:
    """Recorded with the `await-acknowledgment` patch and a roster: the session heard its
    notices run out (the no-show alert, and the therapist's alert of the emergency call),
    climbed again, and closed on a clinician's note."""
    trail = [event.event_type.value for event in await trail_from_history(
        load(HISTORIES / "high_risk_awaiting_acknowledgment.json"))]
    assert trail[trail.index("escalation_sent"):] == [
        "escalation_sent", "awaiting_clinician", "notice_ran_out", "notice_ran_out",
        "notice_renewed", "notice_ran_out", "clinician_decision", "plan_created", "closed",
    ]


async def test_a_changed_workflow_fails_the_replay_with_a_nondeterminism_error() -> None:
    replayer = Replayer(workflows=[ChangedSessionWorkflow], data_converter=TEST_CONVERTER,
                        workflow_runner=UnsandboxedWorkflowRunner())
    failure = await replay_failure(replayer, load(HISTORIES / "unreachable_escalated.json"))
    assert failure is not None
    assert "Nondeterminism" in failure or "nondeterminism" in failure


async def test_histories_cannot_be_replayed_without_the_key() -> None:
    """The files hold only encrypted payloads: no readable client data in the repository."""
    text = (HISTORIES / "reached_after_the_voicemail.json").read_text()
    for personal in ("Robin", "robin@example.org", "+1415555", "called back"):
        assert personal not in text


# -- cross-checking a history against a trail ---------------------------------------------------


async def test_a_history_matches_the_trail_it_recorded() -> None:
    history = load(HISTORIES / "unreachable_escalated.json")
    activities = await history_activities(history, TEST_CONVERTER)
    trail = await trail_from_history(history)
    assert [event.event_type.value for event in trail][-3:] == [
        "escalation_sent", "plan_created", "closed",
    ]
    assert cross_check(activities, trail) == []


async def test_a_missing_attempt_row_is_a_mismatch_both_ways() -> None:
    history = load(HISTORIES / "unreachable_escalated.json")
    activities = await history_activities(history, TEST_CONVERTER)
    trail = await trail_from_history(history)
    attempt = next(event for event in trail if event.event_type.value == "outreach_attempted"
                   and event.data["attempt"] == 2)
    problems = cross_check(activities, [event for event in trail if event != attempt])
    assert problems == [
        f"the history records audit event #{attempt.sequence} outreach_attempted but the "
        "audit trail has no such row",
        "the history has call_client for attempt 2 but the audit trail has no "
        "outreach_attempted or outreach_failed or outreach_uncertain event for attempt 2",
    ]


async def test_a_row_without_cause_and_a_changed_row_are_mismatches() -> None:
    history = load(HISTORIES / "reached_on_the_call.json")
    activities = await history_activities(history, TEST_CONVERTER)
    trail = await trail_from_history(history)
    changed = trail[1].model_copy(update={"data": {**trail[1].data, "forged": True}})
    extra = trail[-1].model_copy(update={"sequence": len(trail) + 1})
    problems = cross_check(activities, [trail[0], changed, *trail[2:], extra])
    assert problems[0] == (
        f"audit row #2 {changed.event_type.value} differs from the event the history "
        f"recorded there (#2 {trail[1].event_type.value})"
    )
    assert f"audit row #{extra.sequence} closed has no cause in the history" in problems


# -- `starter.py audit replay` against the time-skipping server ---------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, time_skipping_env: WorkflowEnvironment,
            task_queue: str, service_database_url: str, tmp_path: Path) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_TIME_SCALE", "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS",
                       time_skipping_env.client.service_client.config.target_host)
    monkeypatch.setenv("MSR_TASK_QUEUE", task_queue)
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)


@pytest.fixture
async def running_worker(client: Client, pool: asyncpg.Pool,
                         task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")) as worker:
        yield worker


def daytime(after: datetime) -> datetime:
    """10:00 in the factories' client zone at or after `after`: inside contact hours."""
    zone = ZoneInfo("America/Los_Angeles")
    start = after.astimezone(zone).replace(hour=10, minute=0, second=0, microsecond=0)
    if start < after:
        start += timedelta(days=1)
    return start.astimezone(after.tzinfo)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(starter.main, list(argv))


@pytest.mark.usefixtures("cli_env", "running_worker")
async def test_audit_replay_command(
    client: Client, pool: asyncpg.Pool, task_queue: str, database_url: str,
    time_skipping_env: WorkflowEnvironment, capsys: pytest.CaptureFixture[str],
) -> None:
    phone = "+14155550177"
    await SimulatedPhone(pool).script(phone, Behaviour.ANSWERS)
    start = daytime(await time_skipping_env.get_current_time() + timedelta(hours=1))
    sessions = [booking(start=start.isoformat()) for _ in range(2)]
    sessions = [session.model_copy(update={"client": session.client.model_copy(
        update={"phone": phone})}) for session in sessions]
    for session in sessions:
        result = await client.execute_workflow(SessionWorkflow.run, session,
                                               id=session.workflow_id, task_queue=task_queue)
        assert result.outcome is Outcome.REACHED
    first, second = (session.session_id for session in sessions)

    assert await cli("audit", "replay", first) == 0
    assert capsys.readouterr().out == f"OK {first}\n"

    # An attacker removes the record of the call from PostgreSQL.
    attacker = await asyncpg.connect(database_url)
    try:
        await attacker.execute("SET session_replication_role = replica")
        await attacker.execute(
            "DELETE FROM audit_events WHERE session_id = $1"
            " AND event_type = 'outreach_attempted'", second,
        )
    finally:
        await attacker.close()
    trail = await AuditStore(pool).trail(second)
    assert "outreach_attempted" not in [event.event_type.value for event in trail]

    assert await cli("audit", "replay", second) == 1
    line = capsys.readouterr().out
    assert line.startswith(f"MISMATCH {second}: the history records audit event #")
    assert line.endswith(" outreach_attempted but the audit trail has no such row\n")

    assert await cli("audit", "replay", "--all") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"MISMATCH {second}: ")
    assert out[-1] == "replayed 2 sessions: 1 OK, 1 mismatched"

    assert await cli("audit", "replay", "s-never-booked") == 1
    assert capsys.readouterr().out.startswith(
        "MISMATCH s-never-booked: no workflow history in Temporal"
    )


# -- `audit replay --all`: many sessions in flight, each report under its own id ----------------


class _FakeHandle:
    def __init__(self, history: WorkflowHistory | None, delay: float) -> None:
        self._history = history
        self._delay = delay

    async def fetch_history(self) -> WorkflowHistory:
        await asyncio.sleep(self._delay)
        if self._history is None:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
        return self._history


class _FakeClient:
    """Histories by workflow id; each fetch takes its own time, so they finish out of order."""

    def __init__(self, histories: dict[str, WorkflowHistory | None]) -> None:
        self.histories = histories
        self.data_converter = TEST_CONVERTER
        self.fetched: list[str] = []

    def get_workflow_handle(self, workflow_id: str) -> _FakeHandle:
        self.fetched.append(workflow_id)
        delay = (int(workflow_id[-3:]) * 5 % 7) / 1000
        return _FakeHandle(self.histories[workflow_id], delay)


class _FakeStore:
    def __init__(self, trails: dict[str, list[AuditEvent]]) -> None:
        self.trails = trails

    async def session_count(self) -> int:
        return len(self.trails)

    async def session_ids(self, *, after: str = "", limit: int = 100) -> list[str]:
        return sorted(sid for sid in self.trails if sid > after)[:limit]

    async def trail(self, session_id: str) -> list[AuditEvent]:
        await asyncio.sleep((int(session_id[-3:]) * 3 % 5) / 1000)
        return self.trails[session_id]

    async def archived_history(self, session_id: str) -> WorkflowHistory | None:
        del session_id
        return None  # nothing archived: these sessions closed before the archiver ran


def _nondeterministic(history: WorkflowHistory) -> WorkflowHistory:
    """The history with its first activity renamed: today's code would schedule another."""
    events = list(history.events)
    for index, event in enumerate(events):
        if event.HasField("activity_task_scheduled_event_attributes"):
            copy = type(event)()
            copy.CopyFrom(event)
            copy.activity_task_scheduled_event_attributes.activity_type.name = "renamed"
            events[index] = copy
            return WorkflowHistory(history.workflow_id, events)
    raise AssertionError("no activity in the history")


async def test_replay_all_reports_each_session_under_its_own_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many sessions in flight at once, several pages, one replayer: every mismatch, missing
    history and replay failure is reported under its own session, in session order."""
    monkeypatch.setattr(audit_cli, "PAGE", 7)
    monkeypatch.setattr(audit_cli, "IN_FLIGHT", 5)
    histories: dict[str, WorkflowHistory | None] = {}
    trails: dict[str, list[AuditEvent]] = {}
    expected: list[str] = []
    for index in range(30):
        session_id = f"s-replay-{index:03d}"
        workflow_id = workflow_id_for(session_id)
        path = BRANCH_FILES[index % len(BRANCH_FILES)]
        history = WorkflowHistory.from_json(workflow_id, path.read_text(encoding="utf-8"))
        trail = await trail_from_history(history)
        if index % 9 == 4:  # past Temporal's retention
            histories[workflow_id] = None
            trails[session_id] = trail
            expected.append(f"MISMATCH {session_id}: no workflow history in Temporal "
                            f"(workflow {workflow_id}) nor in the archive; past the "
                            "namespace's retention before it was archived, or never started")
            continue
        if index % 7 == 2:  # a row removed: which one depends on the session
            removed = trail[index % len(trail)]
            trail = [event for event in trail if event != removed]
            problems = cross_check(await history_activities(history, TEST_CONVERTER), trail)
            expected.append(f"MISMATCH {session_id}: {problems[0]}")
        if index == 17:
            history = _nondeterministic(load(HISTORIES / "unreachable_escalated.json"))
            history = WorkflowHistory(workflow_id, history.events)
            trail = await trail_from_history(history)
            expected.append(f"MISMATCH {session_id}: replay failed: ")
        histories[workflow_id] = history
        trails[session_id] = trail
    client = _FakeClient(histories)
    progress: list[tuple[int, int]] = []

    verdict = await audit_cli.run_replay(
        audit_cli.ReplayRequest(None), cast(Client, client), cast(AuditStore, _FakeStore(trails)),
        audit_cli.ReplaySetup([SessionWorkflow], WORKFLOW_RUNNER),
        progress=lambda done, total: progress.append((done, total)),
    )

    lines = verdict.text.splitlines()
    assert not verdict.ok
    assert lines[-1] == (f"replayed 30 sessions: {30 - len(expected)} OK, "
                         f"{len(expected)} mismatched")
    assert len(lines) == len(expected) + 1
    for line, want in zip(lines, expected, strict=False):
        assert line.startswith(want)
    failed = next(line for line in lines if line.startswith("MISMATCH s-replay-017: "))
    assert "ondeterminism" in failed
    assert progress == [(done, 30) for done in range(1, 31)]
    assert sorted(client.fetched) == client.fetched  # one fetch each, in session order
    assert len(client.fetched) == 30


def test_a_step_recorded_as_uncertain_is_its_documented_outcome() -> None:
    # A voicemail whose worker died mid-delivery (or that a decision stopped in flight) is
    # recorded as uncertain: the cross-check takes that as the step's outcome.
    key = "session-s-u/attempt-1/voicemail"
    voicemail = HistoryActivity("leave_voicemail", [{"idempotency_key": key}], completed=False)
    uncertain = AuditEvent(session_id="s-u", sequence=1,
                           event_type=AuditEventType.OUTREACH_UNCERTAIN,
                           occurred_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
                           data={"schema_version": 1, "attempt": 1, "channel": "voicemail",
                                 "reason": "delivery uncertain"})
    problems = [p for p in cross_check([voicemail], [uncertain], closed=False)
                if "no cause in the history" not in p]
    assert problems == []
    other = uncertain.model_copy(update={"data": {**uncertain.data, "channel": "call"}})
    assert any("has leave_voicemail for attempt 1" in p
               for p in cross_check([voicemail], [other], closed=False))
