"""Size and length limits on what a scheduling system sends (issue 11 item 7).

Each over-limit input is refused with one line naming what and the limit (exit 2), before
anything connects: Temporal is pointed at an address nobody listens on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from missed_session.application import limits
from missed_session.domain.models import (
    Cancellation,
    ClientResponse,
    ClinicianDecision,
    Reschedule,
    SessionBooking,
    TextReply,
)
from tests.support.factories import booking_data
from tests.support.starter import UNREACHABLE, cli, one_line, temporal_env  # noqa: F401

pytestmark = pytest.mark.usefixtures("temporal_env")


@pytest.fixture(autouse=True)
def no_temporal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", UNREACHABLE)


async def test_a_booking_file_padded_to_5_mb_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "booking.json"
    path.write_text(" " * (5 * 1024 * 1024) + json.dumps(booking_data()), encoding="utf-8")
    assert await cli("schedule", "--file", str(path)) == 2
    assert one_line(capsys.readouterr().err) == (
        f"error: --file {path}: {path.stat().st_size:,} bytes is over the limit of "
        f"{limits.MAX_BOOKING_BYTES:,} bytes"
    )


async def test_a_day_file_over_its_limit_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "MAX_DAY_FILE_BYTES", 4096)  # the check, not 32 MB of disk
    path = tmp_path / "day.jsonl"
    path.write_text("\n".join(json.dumps(booking_data()) for _ in range(20)), encoding="utf-8")
    assert await cli("schedule", "--file", str(path)) == 2
    assert "bytes is over the limit of 4,096 bytes" in one_line(capsys.readouterr().err)


async def test_one_oversized_line_of_a_day_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    padded = json.dumps(booking_data()) + " " * limits.MAX_BOOKING_BYTES
    path = tmp_path / "day.jsonl"
    path.write_text(f"{json.dumps(booking_data())}\n{padded}\n", encoding="utf-8")
    assert await cli("schedule", "--file", str(path)) == 2
    assert one_line(capsys.readouterr().err).startswith(
        f"error: --file {path}: line 2: "
    )


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["cancel", "s-1", "--reason", "x" * 201], "reason"),
        (["reschedule", "s-1", "--start", "2030-01-01T10:00:00+00:00", "--reason", "x" * 201],
         "reason"),
        (["responded", "s-1", "--channel", "call", "--note", "x" * 2001], "note"),
        (["responded", "s-1", "--channel", "call", "--responder", "x" * 51], "responder"),
        (["text-reply", "s-1", "--body", "x" * 1601], "body"),
        (["add-note", "s-1", "--clinician", "t-ana", "--note", "x" * 501], "reason"),
        (["mark-safe", "s-1", "--clinician", "t" * 65, "--reason", "seen"], "clinician_id"),
    ],
)
async def test_free_text_over_its_length_is_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str,
) -> None:
    assert await cli(*argv) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {field}: String should have at most ")
    assert "xxxxxxxxxx" not in err  # the text itself is not echoed


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("client", "first_name"), "R" * 51),
        (("client", "ref"), "c" * 65),
        (("client", "time_zone"), "A" * 5000),
        (("client", "email"), "a" * 3000 + "@example.org"),
        (("client", "emergency_contact", "name"), "S" * 101),
        (("therapist_id",), "t" * 65),
        (("session_id",), "s" * 65),
    ],
)
def test_every_free_text_field_of_a_booking_has_a_limit(
    path: tuple[str, ...], value: str,
) -> None:
    data = booking_data()
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ValidationError) as raised:
        SessionBooking.model_validate(data)
    [error] = raised.value.errors()
    assert error["loc"] == path


def test_messages_have_limits() -> None:
    cases: list[tuple[type[BaseModel], dict[str, str]]] = [
        (Cancellation, {"reason": "x" * 201}),
        (Reschedule, {"start": "2030-01-01T10:00:00+00:00", "reason": "x" * 201}),
        (ClientResponse, {"channel": "call", "note": "x" * 2001}),
        (TextReply, {"body": "x" * 1601}),
        (ClinicianDecision, {"clinician_id": "t", "reason": "x" * 501}),
        (ClinicianDecision, {"clinician_id": "t", "reason": "r", "legal_basis": "x" * 201}),
    ]
    for model, data in cases:
        with pytest.raises(ValidationError):
            model.model_validate(data)
