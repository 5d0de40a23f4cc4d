"""starter.py through its real command line, against the time-skipping server and PostgreSQL.

`main()` runs in a thread (it calls `asyncio.run` itself) and finds the servers through the
same MSR_* environment variables an operator would set.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import starter
from missed_session.application import Application
from missed_session.cli.booking_input import build_booking
from missed_session.cli.parser import parse_args
from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.domain import events
from missed_session.domain.models import (
    AuditEventType,
    Outcome,
    ResponseChannel,
    SessionResult,
    workflow_id_for,
)
from missed_session.store.audit import AuditStore
from tests.support.factories import booking_data, read_as
from tests.support.starter import (  # noqa: F401 - fixtures, used by name
    UNREACHABLE,
    assert_not_started,
    cli,
    cli_env,
    future_start,
    one_line,
    recorded,
    running_worker,
    temporal_env,
    write_json,
)


def details(audit_line: str) -> list[str]:
    """The `key=value` details of a line of `audit`."""
    return audit_line.split()[3:]


def schedule_flags(session_id: str, start: datetime, **overrides: str | None) -> list[str]:
    """`schedule` flags for a valid booking; an override of None drops the flag."""
    flags: dict[str, str | None] = {
        "--session-id": session_id,
        "--client-ref": "c-robin",
        "--first-name": "Robin",
        "--phone": "+14155550188",
        "--email": "robin@example.org",
        "--time-zone": "America/Los_Angeles",
        "--therapist-id": "t-ana",
        "--start": start.isoformat(),
        "--emergency-name": "Sam",
        "--emergency-phone": "+14155550999",
        "--emergency-consent-date": "2026-01-15",
    }
    flags.update(overrides)
    return ["schedule", *(part for flag, value in flags.items() if value is not None
                          for part in (flag, value))]


def new_session_id() -> str:
    return str(booking_data()["session_id"])


# -- bad input: one line naming the field, exit 2, nothing started ----------------------------

NOW = datetime.now(UTC)

BAD_FLAGS: list[tuple[str, dict[str, str | None], str]] = [
    ("unknown time zone", {"--time-zone": "Mars/Base"},
     "error: client.time_zone: unknown IANA time zone 'Mars/Base'"),
    ("past its grace period", {"--start": (NOW - timedelta(hours=2)).isoformat()},
     "error: start: "),
    ("malformed phone", {"--phone": "555-0123"}, "error: client.phone: "),
    ("malformed emergency phone", {"--emergency-phone": "0999"},
     "error: client.emergency_contact.phone: "),
    ("missing therapist", {"--therapist-id": None}, "error: therapist_id: Field required"),
    ("missing first name", {"--first-name": None}, "error: client.first_name: Field required"),
    ("non-ISO start", {"--start": "next tuesday"}, "error: start: "),
    ("naive start", {"--start": "2030-01-01T10:00:00"},
     "error: start: must include a UTC offset or time zone"),
    ("bad duration", {"--duration": "ten"}, "error: argument --duration: "),
]


@pytest.mark.parametrize(("flags", "expected"), [case[1:] for case in BAD_FLAGS],
                         ids=[case[0] for case in BAD_FLAGS])
async def test_bad_flags_are_refused_before_anything_starts(
    temporal_env: None, client: Client, time_skipping_env: WorkflowEnvironment,  # noqa: F811
    capsys: pytest.CaptureFixture[str], flags: dict[str, str | None], expected: str,
) -> None:
    session_id = new_session_id()
    start = await future_start(time_skipping_env)
    assert await cli(*schedule_flags(session_id, start, **flags)) == 2
    captured = capsys.readouterr()
    assert one_line(captured.err).startswith(expected)
    for personal in ("Robin", "+14155550188", "555-0123", "robin@example.org"):
        assert personal not in captured.err  # input values are not echoed
    assert captured.out == ""
    await assert_not_started(client, session_id)


async def test_malformed_json_file_names_the_file(
    temporal_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    path = tmp_path / "booking.json"
    path.write_text('{"session_id": "s-1", ', encoding="utf-8")
    assert await cli("schedule", "--file", str(path)) == 2
    assert one_line(capsys.readouterr().err).startswith(f"error: --file {path}: not valid JSON")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["client"].update(time_zone="Mars/Base"),
         "error: client.time_zone: unknown IANA time zone 'Mars/Base'"),
        (lambda d: d.pop("therapist_id"), "error: therapist_id: Field required"),
        (lambda d: d.update(start="2030-01-01T10:00:00"), "error: start: must include"),
        (lambda d: d.update(protocol={"grace_period_minutes": 90}),
         "error: protocol.grace_period_minutes: "),
        (lambda d: d.update(therapist="t-ana"), "error: therapist: Extra inputs"),
    ],
    ids=["time zone", "missing field", "naive start", "protocol out of range", "unknown field"],
)
async def test_bad_booking_file_is_refused_before_anything_starts(
    temporal_env: None, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
    change: Any, expected: str,
) -> None:
    data = booking_data()
    change(data)
    assert await cli("schedule", "--file", write_json(tmp_path / "b.json", data)) == 2
    assert one_line(capsys.readouterr().err).startswith(expected)
    await assert_not_started(client, data["session_id"])


async def test_file_and_flags_together_are_refused(
    temporal_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    path = write_json(tmp_path / "b.json", booking_data())
    assert await cli("schedule", "--file", path, "--therapist-id", "t-bo") == 2
    assert one_line(capsys.readouterr().err) == (
        "error: --file: cannot be combined with --therapist-id"
    )


async def test_bad_input_is_refused_without_connecting(
    temporal_env: None, monkeypatch: pytest.MonkeyPatch, time_skipping_env: WorkflowEnvironment,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With Temporal unreachable, bad input still gets exit 2: validation comes first."""
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", UNREACHABLE)
    start = await future_start(time_skipping_env)
    flags = schedule_flags(new_session_id(), start, **{"--time-zone": "Mars/Base"})
    assert await cli(*flags) == 2
    assert one_line(capsys.readouterr().err).startswith("error: client.time_zone:")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["reschedule", "s-x", "--start", "2030-01-01T10:00:00"], "error: start: must include"),
        (["reschedule", "s-x", "--start", "soon"], "error: start: "),
        (["reschedule", "s-x"], "error: the following arguments are required: --start"),
        (["responded", "s-x", "--channel", "fax"], "error: argument --channel: invalid choice"),
        (["cancel", "s-x", "--reason", "x" * 201], "error: reason: "),
        (["check-in", "../etc"], "error: session_id: "),
        (["status", ""], "error: session_id: "),
        (["audit", "a b"], "error: session_id: "),
        (["launch"], "error: argument COMMAND: invalid choice"),
        ([], "error: the following arguments are required: COMMAND"),
    ],
)
async def test_bad_command_input_exits_2(
    temporal_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],  # noqa: F811
    argv: list[str], expected: str,
) -> None:
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", UNREACHABLE)  # refused before any connection
    assert await cli(*argv) == 2
    captured = capsys.readouterr()
    assert one_line(captured.err).startswith(expected)
    assert captured.out == ""


async def test_configuration_error_exits_2(
    temporal_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    monkeypatch.setenv("MSR_TIME_SCALE", "0")
    assert await cli("check-in", "s-x") == 2
    assert one_line(capsys.readouterr().err).startswith("error: setting time_scale: ")


async def test_missing_config_file_exits_2(
    temporal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MSR_CONFIG_FILE", str(tmp_path / "missing.toml"))
    assert await cli("status", "s-x") == 2
    assert one_line(capsys.readouterr().err).startswith("error: MSR_CONFIG_FILE: no such file")


# -- servers that cannot be reached, sessions that are not there: exit 1 ----------------------


async def test_unreachable_temporal_exits_1(
    temporal_env: None, monkeypatch: pytest.MonkeyPatch, time_skipping_env: WorkflowEnvironment,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", UNREACHABLE)
    start = await future_start(time_skipping_env)
    assert await cli(*schedule_flags(new_session_id(), start)) == 1
    assert one_line(capsys.readouterr().err).startswith(
        f"error: cannot connect to Temporal at {UNREACHABLE}:"
    )


@pytest.mark.parametrize(
    "argv",
    [["check-in"], ["cancel"], ["responded", "--channel", "call"],
     ["reschedule", "--start", "2030-01-01T10:00:00+00:00"], ["status"]],
)
async def test_unknown_session_exits_1(
    temporal_env: None, client: Client, capsys: pytest.CaptureFixture[str], argv: list[str]  # noqa: F811
) -> None:
    session_id = new_session_id()
    assert await cli(argv[0], session_id, *argv[1:]) == 1
    assert one_line(capsys.readouterr().err) == (
        f"error: no session {session_id} (workflow session-{session_id})"
    )
    await assert_not_started(client, session_id)


# -- the real thing ------------------------------------------------------------------------------


async def test_scheduling_twice_starts_one_workflow(
    cli_env: None, client: Client, running_worker: Worker,  # noqa: F811
    time_skipping_env: WorkflowEnvironment, capsys: pytest.CaptureFixture[str],
) -> None:
    session_id = new_session_id()
    start = await future_start(time_skipping_env)
    assert await cli(*schedule_flags(session_id, start)) == 0
    assert one_line(capsys.readouterr().out) == (
        f"scheduled session {session_id} (workflow session-{session_id})"
    )
    handle = client.get_workflow_handle(workflow_id_for(session_id), result_type=SessionResult)
    first_run = (await handle.describe()).run_id

    # The identical booking again (its start written in another offset): nothing changes.
    same = start.astimezone(timezone(timedelta(hours=-5)))
    assert await cli(*schedule_flags(session_id, same)) == 0
    assert one_line(capsys.readouterr().out) == (
        f"session {session_id} (workflow session-{session_id}) is already scheduled;"
        " nothing changed"
    )
    # A different booking under the id is refused, naming the fields (never their values).
    moved = start + timedelta(hours=1)
    assert await cli(*schedule_flags(session_id, moved, **{"--therapist-id": "t-bo",
                                                           "--phone": "+14155550111"})) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err) == (
        f"error: session {session_id} (workflow session-{session_id}) is already scheduled"
        " with a different booking; differing fields: client.phone, start, therapist_id"
        " (send a reschedule, or cancel and book a new id)"
    )
    assert "+14155550111" not in captured.err
    assert (await handle.describe()).run_id == first_run
    history = await handle.fetch_history()
    assert sum(event.HasField("workflow_execution_started_event_attributes")
               for event in history.events) == 1
    # Closed cleanly: a workflow task left outstanding would stop the test server skipping time.
    assert await cli("cancel", session_id) == 0
    result = await handle.result()
    assert isinstance(result, SessionResult)
    assert result.outcome is Outcome.CANCELLED


async def test_check_in_then_status_and_audit(
    cli_env: None, client: Client, pool: asyncpg.Pool, running_worker: Worker,  # noqa: F811
    time_skipping_env: WorkflowEnvironment, capsys: pytest.CaptureFixture[str],
) -> None:
    session_id = new_session_id()
    start = await future_start(time_skipping_env)
    assert await cli(*schedule_flags(session_id, start)) == 0
    capsys.readouterr()

    assert await cli("status", session_id) == 0
    status = capsys.readouterr().out
    assert "status: scheduled" in status
    assert f"next action: wait for the start at {start.isoformat()}" in status

    assert await cli("check-in", session_id) == 0
    assert one_line(capsys.readouterr().out) == (
        f"session {session_id}: check_in recorded: the client checked in;"
        " the session closes as attended"
    )
    handle = client.get_workflow_handle(workflow_id_for(session_id), result_type=SessionResult)
    result = await handle.result()
    assert result.outcome is Outcome.ATTENDED

    assert await cli("status", session_id) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"session {session_id} (workflow session-{session_id})",
        "status: closed",
        "attempts: 0",
        "next action: none",
        "outcome: attended",
    ]

    assert await cli("audit", session_id) == 0
    lines = capsys.readouterr().out.splitlines()
    trail = await AuditStore(pool).trail(session_id)
    assert [int(line.split()[0]) for line in lines] == list(range(1, len(trail) + 1))
    assert [line.split()[2] for line in lines] == ["scheduled", "checked_in", "closed"]
    assert details(lines[1]) == ["late=false"]
    assert details(lines[2]) == ["attempts=0", "outcome=attended"]
    assert "client_ref=c-robin" in lines[0]
    output = "\n".join(lines)
    for personal in ("Robin", "+1415555", "robin@example.org", "Sam"):
        assert personal not in output

    assert await cli("check-in", session_id) == 1
    assert one_line(capsys.readouterr().err) == (
        f"error: session {session_id} is already closed (completed, workflow session-{session_id})"
    )


async def test_reschedule_then_cancel(
    cli_env: None, client: Client, pool: asyncpg.Pool, running_worker: Worker,  # noqa: F811
    time_skipping_env: WorkflowEnvironment, capsys: pytest.CaptureFixture[str],
) -> None:
    session_id = new_session_id()
    start = await future_start(time_skipping_env)
    assert await cli(*schedule_flags(session_id, start)) == 0
    moved = start + timedelta(days=1)
    assert await cli("reschedule", session_id, "--start", moved.isoformat(),
                     "--reason", "client asked") == 0
    store = AuditStore(pool)
    await recorded(store, session_id, AuditEventType.RESCHEDULED)
    assert await cli("cancel", session_id, "--reason", "client moved away") == 0
    capsys.readouterr()
    handle = client.get_workflow_handle(workflow_id_for(session_id), result_type=SessionResult)
    assert (await handle.result()).outcome is Outcome.CANCELLED

    trail = await store.trail(session_id)
    assert [event.event_type for event in trail] == [
        AuditEventType.SCHEDULED, AuditEventType.RESCHEDULED, AuditEventType.CANCELLED,
        AuditEventType.CLOSED,
    ]
    assert read_as(trail[1], events.Rescheduled).start == moved
    assert read_as(trail[2], events.Cancelled).reason == "client moved away"
    assert await cli("audit", session_id) == 0
    assert 'reason="client asked"' in capsys.readouterr().out.splitlines()[1]


async def test_responded_during_outreach_ends_it(
    cli_env: None, client: Client, pool: asyncpg.Pool, running_worker: Worker,  # noqa: F811
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Scheduled from a file; the client answers the voicemail between outreach attempts."""
    start = await future_start(time_skipping_env)
    data = booking_data(start=start.isoformat())
    session_id = data["session_id"]
    assert await cli("schedule", "--file", write_json(tmp_path / "b.json", data)) == 0
    # Past the start and the 15-minute grace period; attempt 2 is 15 minutes after attempt 1.
    until = start + timedelta(minutes=16) - await time_skipping_env.get_current_time()
    await time_skipping_env.sleep(until)
    store = AuditStore(pool)
    await recorded(store, session_id, AuditEventType.VOICEMAIL_LEFT)
    capsys.readouterr()
    assert await cli("status", session_id) == 0
    status = capsys.readouterr().out
    assert "status: outreach" in status
    assert "attempts: 1" in status
    assert "next action: outreach attempt 2 at " in status
    assert await cli("cancel", session_id) == starter.REFUSED
    assert one_line(capsys.readouterr().err) == (
        f"error: session {session_id}: cancel refused: the session is already a no-show"
    )

    assert await cli("responded", session_id, "--channel", "text",
                     "--responder", "partner", "--note", "running late, sorry") == 0
    handle = client.get_workflow_handle(workflow_id_for(session_id), result_type=SessionResult)
    result = await handle.result()
    assert result.outcome is Outcome.REACHED
    assert result.attempts_made == 1
    responded = [event for event in await store.trail(session_id)
                 if event.event_type is AuditEventType.CLIENT_RESPONDED]
    assert [events.read(event) for event in responded] == [
        events.ClientResponded(
            channel=ResponseChannel.TEXT, responder="partner", note="running late, sorry"
        )
    ]


async def test_audit_needs_no_temporal(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", UNREACHABLE)
    assert await cli("audit", "s-nothing-here") == 1
    assert one_line(capsys.readouterr().err) == (
        "error: no audit events for session s-nothing-here")


async def test_unreachable_database_exits_1(
    temporal_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    monkeypatch.setenv("MSR_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:1/none")
    assert await cli("audit", "s-1") == 1
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: cannot open the audit database:")
    assert "secret" not in err


def test_new_key_needs_no_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The configuration error for a missing key sends the operator here: it must work."""
    monkeypatch.delenv("MSR_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MSR_DATABASE_URL", "postgresql://db.example/msr")
    monkeypatch.delenv("MSR_ENCRYPTION_KEYS", raising=False)
    with pytest.raises(ConfigurationError, match="encryption_keys"):
        load_settings()
    assert starter.main(["new-key", "--key-id", "k-2026"]) == 0
    keys = json.loads(one_line(capsys.readouterr().out))
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(keys))
    assert list(keys) == ["k-2026"]
    assert load_settings().encryption_keys == keys


# -- the pure half ----------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return parse_args(list(argv))


def app(time_scale: float) -> Application:
    """The application as the CLI builds it, for the pure half (nothing connects)."""
    return Application(Settings(time_scale=time_scale))


def test_time_scale_defaults_to_the_setting(tmp_path: Path) -> None:
    data = booking_data()
    from_file = parse("schedule", "--file", write_json(tmp_path / "b.json", data))
    assert build_booking(from_file, app(60)).protocol.time_scale == 60
    data["protocol"] = {"time_scale": 2}
    explicit = parse("schedule", "--file", write_json(tmp_path / "c.json", data))
    assert build_booking(explicit, app(60)).protocol.time_scale == 2


def test_flags_build_the_booking() -> None:
    args = parse(*schedule_flags("s-1", datetime(2030, 1, 1, 9, tzinfo=UTC)),
                 "--duration", "45", "--modality", "telehealth", "--risk-tier", "high",
                 "--grace-period", "8", "--attempts", "2", "--spacing", "20")
    booking = build_booking(args, app(1))
    assert booking.session_id == "s-1"
    assert booking.duration_minutes == 45
    assert booking.modality.value == "telehealth"
    assert booking.risk_tier.value == "high"
    contact = booking.client.emergency_contact
    assert contact is not None
    assert contact.consent
    assert str(contact.consent_date) == "2026-01-15"
    protocol = booking.protocol
    assert (protocol.grace_period_minutes, protocol.high_risk_grace_period_minutes) == (8, 8)
    assert (protocol.max_attempts, protocol.attempt_spacing_minutes) == (2, 20)


def test_emergency_contact_without_consent_date_has_no_consent() -> None:
    args = parse(*schedule_flags("s-1", datetime(2030, 1, 1, 9, tzinfo=UTC),
                                 **{"--emergency-consent-date": None}))
    contact = build_booking(args, app(1)).client.emergency_contact
    assert contact is not None
    assert not contact.consent
