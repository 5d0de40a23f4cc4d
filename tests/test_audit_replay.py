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
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

import starter
from activities.outreach import Sender
from missed_session.audit.replay import (
    cross_check,
    history_activities,
    recorded_events,
    replay_failure,
)
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.domain.models import AuditEvent, Outcome, SessionBooking, SessionResult
from missed_session.store.audit import AuditStore
from tests.conftest import TEST_CONVERTER, TEST_KEYS
from tests.factories import booking
from worker import WORKFLOW_RUNNER, new_worker
from workflows.session import SessionWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))
BRANCH_FILES = [path for path in RECORDED if path.name != "outcomes.json"]


def load(path: Path) -> WorkflowHistory:
    """A recorded history; its workflow id follows from the branch name."""
    workflow_id = f"session-hist-{path.stem.replace('_', '-')}"
    return WorkflowHistory.from_json(workflow_id, path.read_text(encoding="utf-8"))


async def trail_from_history(history: WorkflowHistory) -> list[AuditEvent]:
    """The audit trail the history asked for, as PostgreSQL would hold it."""
    activities = await history_activities(history, TEST_CONVERTER)
    events = [event for activity in activities for event in recorded_events(activity)]
    return sorted(events, key=lambda event: event.sequence)


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


@workflow.defn(name="SessionWorkflow")
class ChangedSessionWorkflow(SessionWorkflow):
    """Today's workflow with one activity added before anything else (and the first timer)."""

    @workflow.run
    async def run(self, booking: SessionBooking) -> SessionResult:
        await workflow.execute_activity(
            "look_up_client_preferences", booking.client.ref,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return await super().run(booking)


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
        "outreach_attempted or outreach_failed event for attempt 2",
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
            task_queue: str, database_url: str, tmp_path: Path) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_TIME_SCALE", "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS",
                       time_skipping_env.client.service_client.config.target_host)
    monkeypatch.setenv("MSR_TASK_QUEUE", task_queue)
    monkeypatch.setenv("MSR_DATABASE_URL", database_url)


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
    assert out[-1] == "replayed 2 closed sessions: 1 OK, 1 mismatched"

    assert await cli("audit", "replay", "s-never-booked") == 1
    assert capsys.readouterr().out.startswith(
        "MISMATCH s-never-booked: no workflow history in Temporal"
    )
