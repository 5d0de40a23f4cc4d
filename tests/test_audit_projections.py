"""Projections: attendance and open therapist tasks, maintained with every append and
rebuilt from the audit trail; after a mixed day the two must be the same."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

import starter
from missed_session.domain.events import Closed, Scheduled
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from tests.support.audit_export import recorded_trail
from tests.support.audit_projections import snapshot
from tests.support.audit_replay import BRANCH_FILES, HISTORIES
from tests.support.factories import read_as
from tests.support.servers import TEST_KEYS


async def mixed_day(pool: asyncpg.Pool) -> None:
    """Every recorded branch's trail, appended through the store as the worker would."""
    store = AuditStore(pool)
    for path in BRANCH_FILES:
        trail = await recorded_trail(path)
        for event in trail[:-1]:
            await store.record([event])
        closed = trail[-1]
        scheduled = read_as(trail[0], Scheduled)
        await store.record([closed], attendance=Attendance(
            client_ref=scheduled.client_ref, therapist_id=scheduled.therapist_id,
            start=closed.occurred_at, outcome=read_as(closed, Closed).outcome))
    await store.record([trail[0].model_copy(update={"session_id": "s-still-open"})])


async def test_rebuilt_projections_equal_the_incremental_ones(pool: asyncpg.Pool) -> None:
    await mixed_day(pool)
    incremental = await snapshot(pool)
    attendance, tasks = incremental
    outcomes = json.loads((HISTORIES / "outcomes.json").read_text())
    assert len(attendance) == len(BRANCH_FILES) + 1
    assert sorted(str(row[4]) for row in attendance if row[4]) == sorted(outcomes.values())
    assert ("s-still-open", None) in {(row[0], row[4]) for row in attendance}
    assert {row[3] for row in tasks} >= {"decide_after_blocked_escalation",
                                         "discuss_at_next_session"}

    store = AuditStore(pool)
    events = await store.rebuild_projections()
    assert events == await pool.fetchval("SELECT count(*) FROM audit_events")
    assert await snapshot(pool) == incremental
    # Rebuilding twice changes nothing either.
    await store.rebuild_projections()
    assert await snapshot(pool) == incremental


async def test_projected_attendance_agrees_with_the_attendance_record(pool: asyncpg.Pool) -> None:
    await mixed_day(pool)
    projected = {row["session_id"]: row["outcome"] for row in await pool.fetch(
        "SELECT session_id, outcome FROM projection_attendance WHERE outcome IS NOT NULL")}
    recorded = {row["session_id"]: row["outcome"] for row in await pool.fetch(
        "SELECT session_id, outcome FROM attendance")}
    assert projected == recorded


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, service_database_url: str) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)


@pytest.mark.usefixtures("cli_env")
async def test_projections_rebuild_command(pool: asyncpg.Pool,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    await mixed_day(pool)
    incremental = await snapshot(pool)
    await pool.execute("DELETE FROM projection_open_tasks")
    assert await asyncio.to_thread(starter.main, ["projections", "rebuild"]) == 0
    count = await pool.fetchval("SELECT count(*) FROM audit_events")
    assert capsys.readouterr().out == f"rebuilt projections from {count} audit events\n"
    assert await snapshot(pool) == incremental
    assert await asyncio.to_thread(starter.main, ["projections", "drop"]) == 2
