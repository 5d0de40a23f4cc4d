"""Helpers first written for tests/test_starter.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import starter
from activities.outreach import Sender
from missed_session.domain.models import AuditEventType, workflow_id_for
from missed_session.store.audit import AuditStore
from tests.support.factories import daytime
from tests.support.servers import TEST_KEYS
from worker import new_worker

UNREACHABLE = "127.0.0.1:1"


async def cli(*argv: str) -> int:
    """Run the CLI as an operator would, without blocking the test's event loop."""
    return await asyncio.to_thread(starter.main, list(argv))


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def temporal_env(
    monkeypatch: pytest.MonkeyPatch, time_skipping_env: WorkflowEnvironment, task_queue: str,
    tmp_path: Path,
) -> None:
    """Point the CLI at the time-skipping server, this test's task queue and the test key."""
    for name in ("MSR_CONFIG_FILE", "MSR_TIME_SCALE", "MSR_DATABASE_URL",
                 "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(
        "MSR_TEMPORAL_ADDRESS", time_skipping_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("MSR_TASK_QUEUE", task_queue)


@pytest.fixture
def cli_env(temporal_env: None, monkeypatch: pytest.MonkeyPatch, service_database_url: str) -> None:
    """...and at this test's database."""
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)


@pytest.fixture
async def running_worker(client: Client, pool: asyncpg.Pool,
                         task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")) as worker:
        yield worker


async def future_start(env: WorkflowEnvironment) -> datetime:
    """A start a day ahead of both clocks: other tests may have skipped the server's ahead.

    At 10:00 client time, so that outreach falls inside the client's contact window.
    """
    return daytime(max(datetime.now(UTC), await env.get_current_time()) + timedelta(days=1))


async def assert_not_started(client: Client, session_id: str) -> None:
    with pytest.raises(RPCError) as raised:
        await client.get_workflow_handle(workflow_id_for(session_id)).describe()
    assert raised.value.status is RPCStatusCode.NOT_FOUND


async def recorded(store: AuditStore, session_id: str, event_type: AuditEventType) -> None:
    """Wait (up to 20 s) until the session's trail holds an event of this type."""
    for _ in range(400):
        if event_type in {event.event_type for event in await store.trail(session_id)}:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"no {event_type.value} event for session {session_id}")


def write_json(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)

