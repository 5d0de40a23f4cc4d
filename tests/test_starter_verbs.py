"""`starter.py --help` names every verb group; `starter.py simulate` scripts the simulated
phone without SQL (issue 22)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncpg
import pytest

import starter
from missed_session.application.service import connection_problem
from missed_session.channels.simulated import Behaviour
from missed_session.cli.simulate import callback_seconds
from tests.support.servers import TEST_KEYS

GROUPS = ("audit verify", "projections", "clients", "roster", "notices", "console",
          "kept-texts", "simulate")


def test_help_lists_every_verb_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert starter.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert [group for group in GROUPS if f"\n  {group}" not in out] == []


def test_call_back_minutes_are_protocol_minutes() -> None:
    assert callback_seconds(3, 60) == 3  # the demo's scale: a minute lasts a second
    assert callback_seconds(20, 1) == 1200
    assert callback_seconds(0.1, 60) == 1  # never immediate


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch, service_database_url: str,
                tmp_path: Path) -> None:
    for name in [name for name in os.environ if name.startswith("MSR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MSR_TIME_SCALE", "60")


@pytest.mark.usefixtures("service_env")
async def test_simulate_scripts_a_number(pool: asyncpg.Pool,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    async def script(*argv: str) -> int:
        return await asyncio.to_thread(starter.main, ["simulate", *argv])

    assert await script("+15555550177", "call-back", "--after", "20") == 0
    assert capsys.readouterr().out.strip() == (
        "simulated phone: +15555550177 calls_back 20 minutes (20 s) after the voicemail")
    row = await pool.fetchrow("SELECT behaviour, callback_seconds FROM sim_phone_scripts"
                              " WHERE phone = '+15555550177'")
    assert row is not None
    assert (row["behaviour"], row["callback_seconds"]) == (Behaviour.CALLS_BACK.value, 20)
    for word, behaviour in [("answer", Behaviour.ANSWERS), ("no-answer", Behaviour.NO_ANSWER),
                            ("voicemail-full", Behaviour.RINGS_OUT),
                            ("invalid", Behaviour.INVALID_NUMBER)]:
        assert await script("+15555550177", word) == 0
        assert await pool.fetchval("SELECT behaviour FROM sim_phone_scripts"
                                   " WHERE phone = '+15555550177'") == behaviour.value
    capsys.readouterr()
    assert await script("5550177", "answer") == 2
    assert "number: must be an E.164 phone number" in capsys.readouterr().err
    assert await script("+15555550177", "call-back") == 2
    assert await script("+15555550177", "answer", "--after", "5") == 2
    assert await script("+15555550177", "dance") == 2


def test_a_connection_failure_is_a_few_words_not_the_transport_dump() -> None:
    dump = RuntimeError(
        'Failed client connect: Server connection error: tonic::transport::Error(Transport, '
        'ConnectError(ConnectError("tcp connect error", 127.0.0.1:27000, Os { code: 111, '
        'kind: ConnectionRefused, message: "Connection refused" })))')
    assert connection_problem(dump) == "connection refused: nothing listens there"
    assert connection_problem(OSError("something\nelse")) == "something else"
