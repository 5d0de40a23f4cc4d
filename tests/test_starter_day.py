"""`starter.py schedule --file day.jsonl`: a day's schedule, validated whole, started at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from missed_session.application import Application, ResultKind
from missed_session.cli.booking_input import DayBookings
from missed_session.cli.commands import execute
from missed_session.config import load_settings
from missed_session.domain.models import SessionBooking, workflow_id_for
from tests.support.factories import booking_data
from tests.support.servers import start_test_server
from tests.support.starter import assert_not_started, cli, future_start, one_line, temporal_env  # noqa: F401 (temporal_env is a fixture)

pytestmark = pytest.mark.usefixtures("temporal_env")


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own.

    These tests start sessions with no worker polling. On a shared time-skipping server the
    workflow tasks they leave outstanding stop every later test from skipping time, so they
    get a server that is shut down with them.
    """
    env = await start_test_server()
    yield env
    await env.shutdown()


async def day_of(env: WorkflowEnvironment, count: int) -> list[dict[str, Any]]:
    start = (await future_start(env)).isoformat()
    return [booking_data(start=start) for _ in range(count)]


def write_day(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


async def test_day_file_starts_every_session_once(
    client: Client, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    day = await day_of(time_skipping_env, 5)
    path = write_day(tmp_path / "day.jsonl", ["", *(json.dumps(d) for d in day), "  "])

    assert await cli("schedule", "--file", path, "--concurrency", "2") == 0
    assert one_line(capsys.readouterr().out) == (
        f"{path}: 5 bookings: 5 started, 0 already scheduled, 0 refused"
    )
    for data in day:
        description = await client.get_workflow_handle(
            workflow_id_for(data["session_id"])).describe()
        assert description.workflow_type == "SessionWorkflow"

    # The scheduling system sends the same day again: nothing new starts.
    assert await cli("schedule", "--file", path) == 0
    assert one_line(capsys.readouterr().out) == (
        f"{path}: 5 bookings: 0 started, 5 already scheduled, 0 refused"
    )


BAD_LINES: list[tuple[str, Any, str]] = [
    ("unknown time zone", lambda d: d["client"].update(time_zone="Mars/Base"),
     "line 3: client.time_zone: unknown IANA time zone 'Mars/Base'"),
    ("missing field", lambda d: d.pop("therapist_id"), "line 3: therapist_id: Field required"),
    ("past its grace period", lambda d: d.update(start="2020-01-01T10:00:00+00:00"),
     "line 3: start: 2020-01-01T10:00:00+00:00 is already past its grace period"),
    ("not JSON", "{\"session_id\": ", "line 3: not valid JSON"),
    ("not an object", "[1, 2]", "line 3: a booking must be a JSON object"),
]


@pytest.mark.parametrize(("bad", "expected"), [case[1:] for case in BAD_LINES],
                         ids=[case[0] for case in BAD_LINES])
async def test_one_bad_line_refuses_the_whole_file(
    client: Client, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], bad: Any, expected: str,
) -> None:
    day = await day_of(time_skipping_env, 4)
    lines = [json.dumps(d) for d in day]
    if isinstance(bad, str):
        lines[2] = bad
    else:
        bad(day[2])
        lines[2] = json.dumps(day[2])
    path = write_day(tmp_path / "day.jsonl", lines)

    assert await cli("schedule", "--file", path) == 2
    captured = capsys.readouterr()
    assert one_line(captured.err).startswith(f"error: --file {path}: {expected}")
    assert "Robin" not in captured.err
    assert "+14155550123" not in captured.err
    assert captured.out == ""
    for data in day:
        await assert_not_started(client, data["session_id"])


async def test_a_session_booked_twice_in_one_file_is_refused(
    client: Client, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    day = await day_of(time_skipping_env, 3)
    day[2]["session_id"] = day[0]["session_id"]
    path = write_day(tmp_path / "day.ndjson", [json.dumps(d) for d in day])

    assert await cli("schedule", "--file", path) == 2
    assert one_line(capsys.readouterr().err) == (
        f"error: --file {path}: line 3: session_id: {day[0]['session_id']} is already "
        "booked on line 1"
    )
    for data in day:
        await assert_not_started(client, data["session_id"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--concurrency", "0"], "error: --concurrency: must be at least 1, got 0"),
        (["--therapist-id", "t-ana"], "error: --file: a day file cannot be combined"),
    ],
    ids=["no concurrency", "with booking flags"],
)
async def test_day_file_options_are_checked(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str,
) -> None:
    day = await day_of(time_skipping_env, 1)
    path = write_day(tmp_path / "day.jsonl", [json.dumps(day[0])])
    assert await cli("schedule", "--file", path, *argv) == 2
    assert one_line(capsys.readouterr().err).startswith(expected)


async def test_an_empty_day_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_day(tmp_path / "day.jsonl", ["", ""])
    assert await cli("schedule", "--file", path) == 2
    assert one_line(capsys.readouterr().err) == f"error: --file {path}: no bookings in the file"


async def test_concurrency_is_for_day_files_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "booking.json"
    path.write_text(json.dumps(booking_data()), encoding="utf-8")
    assert await cli("schedule", "--file", str(path), "--concurrency", "4") == 2
    assert one_line(capsys.readouterr().err) == (
        "error: --concurrency: only for a day file (.jsonl)"
    )


async def test_a_booking_refused_while_starting_is_reported_with_its_line(
    client: Client, time_skipping_env: WorkflowEnvironment,
) -> None:
    """A grace period can run out between validation and start: that booking is refused,
    named by its line, and the rest of the day still starts (exit 2)."""
    good, late = await day_of(time_skipping_env, 2)
    late["start"] = "2020-01-01T10:00:00+00:00"
    request = DayBookings(
        "day.jsonl",
        ((1, SessionBooking.model_validate(good)), (2, SessionBooking.model_validate(late))),
        concurrency=2,
    )
    async with Application(load_settings()) as app:
        result = await execute(request, app)
    assert result.kind is ResultKind.REFUSED
    assert result.message.startswith(
        "day.jsonl: 2 bookings: 1 started, 0 already scheduled, 1 refused (line 2: start: "
    )
    await client.get_workflow_handle(workflow_id_for(good["session_id"])).describe()
    await assert_not_started(client, late["session_id"])
