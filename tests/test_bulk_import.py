"""`starter.py import FILE`: every good line starts once, every bad one is named, re-runs are safe.

CI imports MSR_IMPORT_LINES (40) bookings; the issue's check is

    MSR_IMPORT_LINES=1000 .venv/bin/python -m pytest tests/test_bulk_import.py -q
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from missed_session.domain.models import workflow_id_for
from tests.support.factories import booking_data
from tests.support.servers import start_test_server
from tests.support.starter import assert_not_started, cli, future_start, temporal_env  # noqa: F401 (temporal_env is a fixture)

pytestmark = pytest.mark.usefixtures("temporal_env")
LINES = int(os.environ.get("MSR_IMPORT_LINES", "40"))


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of this module's own: its sessions are left waiting with no worker."""
    env = await start_test_server()
    yield env
    await env.shutdown()


def summary_of(out: str) -> list[str]:
    return out.strip().splitlines()


async def test_importing_twice_leaves_one_workflow_per_booking(
    client: Client, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start = (await future_start(time_skipping_env)).isoformat()
    day = [booking_data(start=start) for _ in range(LINES)]
    lines = [json.dumps(data) for data in day]
    bad_zone = booking_data(start=start)
    bad_zone["client"]["time_zone"] = "Mars/Base"
    lines.insert(2, json.dumps(bad_zone))          # line 3
    lines.insert(5, '{"session_id": ')             # line 6
    path = tmp_path / "day.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert await cli("import", str(path), "--concurrency", "8") == 2
    first = summary_of(capsys.readouterr().out)
    assert first == [
        f"{path}: {LINES + 2} bookings: {LINES} started, 0 already scheduled, 2 refused",
        "  line 3: client.time_zone: unknown IANA time zone 'Mars/Base'",
        f"  line 6: not valid JSON: {first[2].split('not valid JSON: ')[1]}",
    ]
    assert await cli("import", str(path)) == 2
    assert summary_of(capsys.readouterr().out)[0] == (
        f"{path}: {LINES + 2} bookings: 0 started, {LINES} already scheduled, 2 refused")

    for data in day:
        description = await client.get_workflow_handle(
            workflow_id_for(data["session_id"])).describe()
        assert description.workflow_type == "SessionWorkflow"
    await assert_not_started(client, bad_zone["session_id"])


def write_csv(path: Path, rows: list[dict[str, Any]]) -> str:
    columns = ["session_id", "therapist_id", "start", "risk_tier", "client.ref",
               "client.first_name", "client.phone", "client.time_zone",
               "client.emergency_contact.name", "client.emergency_contact.phone",
               "client.emergency_contact.consent"]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for data in rows:
            client = data["client"]
            writer.writerow({
                "session_id": data["session_id"], "therapist_id": data["therapist_id"],
                "start": data["start"], "risk_tier": data["risk_tier"],
                "client.ref": client["ref"], "client.first_name": client["first_name"],
                "client.phone": client["phone"], "client.time_zone": client["time_zone"],
                "client.emergency_contact.name": "Sam",
                "client.emergency_contact.phone": "+14155550999",
                "client.emergency_contact.consent": "false",
            })
    return str(path)


async def test_csv_import_and_a_changed_row(
    client: Client, time_skipping_env: WorkflowEnvironment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start = (await future_start(time_skipping_env)).isoformat()
    rows = [booking_data(start=start) for _ in range(3)]
    path = write_csv(tmp_path / "day.csv", rows)
    assert await cli("import", path) == 0
    assert summary_of(capsys.readouterr().out) == [
        f"{path}: 3 bookings: 3 started, 0 already scheduled, 0 refused"]

    rows[1]["risk_tier"] = "high"  # the scheduler changed a booking and re-sent the day
    path = write_csv(tmp_path / "day.csv", rows)
    assert await cli("import", path) == 2
    out = summary_of(capsys.readouterr().out)
    assert out[0] == f"{path}: 3 bookings: 0 started, 2 already scheduled, 1 refused"
    assert out[1].startswith(f"  line 3: session {rows[1]['session_id']} ")
    assert out[1].endswith("differing fields: risk_tier (send a reschedule, or cancel and "
                           "book a new id)")
    assert "Robin" not in "\n".join(out)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("day.txt", "{}", "an import file is .ndjson, .jsonl, .csv"),
    ("day.csv", "", "the CSV file has no header line"),
])
async def test_files_that_cannot_be_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str,
    expected: str,
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert await cli("import", str(path)) == 2
    assert expected in capsys.readouterr().err
