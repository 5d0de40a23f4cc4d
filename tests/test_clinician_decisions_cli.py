"""`starter.py` commands for clinician decisions and text replies, against the real servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from demo import daytime_zone
from missed_session.domain import events
from missed_session.domain.models import (
    AuditEventType,
    Channel,
    DecisionKind,
    Outcome,
    SessionResult,
    workflow_id_for,
)
from missed_session.store.audit import AuditStore
from starter import REFUSED
from tests.support.factories import booking_data, read_as, without_consent
from tests.support.starter import (  # noqa: F401 - fixtures, used by name
    cli,
    cli_env,
    future_start,
    one_line,
    recorded,
    running_worker,
    temporal_env,
    write_json,
)


@pytest.mark.parametrize(("argv", "problem"), [
    (["mark-safe", "s-1", "--clinician", "t-ana"], "--reason"),
    (["escalate-now", "s-1", "--clinician", "t-ana", "--reason", "risk"], "--legal-basis"),
    (["escalate-now", "s-1", "--clinician", "t-ana", "--reason", "risk", "--legal-basis", " "],
     "a legal basis is required"),
    (["stand-down", "s-1", "--clinician", " ", "--reason", "moved"], "clinician_id is required"),
    (["add-note", "s-1", "--clinician", "t-ana", "--note", ""], "the note is empty"),
])
@pytest.mark.usefixtures("temporal_env")
async def test_incomplete_decisions_are_refused_before_connecting(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli(*argv) == 2
    assert problem in one_line(capsys.readouterr().err)


@pytest.mark.usefixtures("cli_env", "running_worker")
async def test_escalate_now_without_consent_then_a_refused_second_decision(
    client: Client, pool: asyncpg.Pool, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A start two minutes ahead of the server's clock (which is ahead of the wall clock), for
    # a client where it is daytime then: the skip stays short and inside the contact window.
    now = max(datetime.now(UTC), await time_skipping_env.get_current_time())
    start = (now + timedelta(minutes=2)).replace(microsecond=0)
    data = without_consent(booking_data(start=start.isoformat(), risk_tier="high"))
    data["client"]["time_zone"] = daytime_zone(start)
    session_id = data["session_id"]
    assert await cli("schedule", "--file", write_json(tmp_path / "b.json", data)) == 0
    await time_skipping_env.sleep(start + timedelta(minutes=11)
                                  - await time_skipping_env.get_current_time())
    store = AuditStore(pool)
    await recorded(store, session_id, AuditEventType.ESCALATION_BLOCKED)
    capsys.readouterr()

    assert await cli("add-note", session_id, "--clinician", "t-ana",
                     "--note", "tried the work number") == 0
    assert await cli("escalate-now", session_id, "--clinician", "t-ana", "--reason",
                     "imminent risk", "--legal-basis", "vital interests") == 0
    assert "escalate_now recorded" in capsys.readouterr().out
    assert await cli("escalate-now", session_id, "--clinician", "t-ana", "--reason",
                     "again", "--legal-basis", "vital interests") == REFUSED
    assert "refused" in one_line(capsys.readouterr().err)

    handle = client.get_workflow_handle(workflow_id_for(session_id), result_type=SessionResult)
    assert await cli("text-reply", session_id, "--body", "STOP") == 0
    # A handle from get_workflow_handle does not skip time by itself: skip past the ladder.
    await time_skipping_env.sleep(timedelta(hours=2))
    result = await handle.result()
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    trail = await store.trail(session_id)
    assert [read_as(e, events.ClinicianDecisionMade).decision for e in trail
            if e.event_type is AuditEventType.CLINICIAN_DECISION] == [
        DecisionKind.ADD_NOTE, DecisionKind.ESCALATE_NOW,
    ]
    sent = [e for e in trail if e.event_type is AuditEventType.ESCALATION_SENT]
    assert [read_as(e, events.EscalationSent).basis for e in sent] == ["clinician decision"]
    assert [events.read(e) for e in trail if e.event_type is AuditEventType.OPTED_OUT] == [
        events.OptedOut(channel=Channel.TEXT)
    ]


PRACTICE = """
version = "2026-11-01"
default_protocol = "standard"

[protocols.standard]

[protocols.intensive]
max_attempts = 2
attempt_spacing_minutes = 10

[therapists.t-ana]
protocol = "intensive"
"""


@pytest.mark.usefixtures("cli_env", "running_worker")
async def test_schedule_resolves_the_therapists_protocol_from_the_practice_file(
    pool: asyncpg.Pool, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    practice = tmp_path / "practice.toml"
    practice.write_text(PRACTICE, encoding="utf-8")
    monkeypatch.setenv("MSR_PRACTICE_FILE", str(practice))
    start = await future_start(time_skipping_env)
    data = booking_data(start=start.isoformat())
    assert await cli("schedule", "--file", write_json(tmp_path / "b.json", data)) == 0

    store = AuditStore(pool)
    await recorded(store, data["session_id"], AuditEventType.SCHEDULED)
    scheduled = read_as((await store.trail(data["session_id"]))[0], events.Scheduled)
    assert scheduled.protocol == "intensive"
    assert str(scheduled.protocol_version).startswith("2026-11-01+")
    assert await cli("cancel", data["session_id"]) == 0  # leave no workflow behind
    await recorded(store, data["session_id"], AuditEventType.CLOSED)


@pytest.mark.usefixtures("temporal_env")
async def test_a_bad_practice_file_is_refused_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    time_skipping_env: WorkflowEnvironment,
) -> None:
    practice = tmp_path / "practice.toml"
    practice.write_text(PRACTICE.replace("max_attempts = 2", "max_attempts = 99"),
                        encoding="utf-8")
    monkeypatch.setenv("MSR_PRACTICE_FILE", str(practice))
    data = booking_data(start=(await future_start(time_skipping_env)).isoformat())
    assert await cli("schedule", "--file", write_json(tmp_path / "b.json", data)) == 2
    assert one_line(capsys.readouterr().err) == (
        f"error: {practice}: protocols.intensive.max_attempts: must be at most 10"
    )


@pytest.mark.usefixtures("temporal_env")
async def test_a_booking_may_not_set_timings_the_practice_file_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    time_skipping_env: WorkflowEnvironment,
) -> None:
    practice = tmp_path / "practice.toml"
    practice.write_text(PRACTICE, encoding="utf-8")
    monkeypatch.setenv("MSR_PRACTICE_FILE", str(practice))
    data = booking_data(start=(await future_start(time_skipping_env)).isoformat(),
                        protocol={"max_attempts": 5})
    assert await cli("schedule", "--file", write_json(tmp_path / "b.json", data)) == 2
    assert "protocol.max_attempts: set by the practice file" in capsys.readouterr().err
