"""The pre-deploy replay gate (scripts/predeploy_check.py): recorded histories, the deployed
build's histories by git ref, and running sessions fetched from a real dev server."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from activities.outreach import Sender
from missed_session.temporal import search_attributes
from missed_session.temporal.scheduling import schedule_session
from tests.support.audit_replay import ChangedSessionWorkflow
from tests.support.factories import booking
from tests.support.servers import TEST_CONVERTER, TEST_KEYS, installed_binary
from worker import new_worker

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "predeploy_check.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("predeploy_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("predeploy_check", module)
    spec.loader.exec_module(module)
    return module


PREDEPLOY = _load()


async def _main(*argv: str) -> int:
    return int(await asyncio.to_thread(PREDEPLOY.main, list(argv)))


async def test_recorded_histories_replay(capsys: pytest.CaptureFixture[str]) -> None:
    assert await _main() == 0
    out = capsys.readouterr().out
    count = len(list((SCRIPT.parents[1] / "tests/histories").glob("*.json"))) - 1
    assert out == f"recorded histories: {count} replayed, 0 failed\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_histories_of_a_git_ref_replay(capsys: pytest.CaptureFixture[str]) -> None:
    assert await _main("--histories-from", "HEAD") == 0
    assert "histories at HEAD: " in capsys.readouterr().out


def _use_changed_workflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand a changed workflow in for today's (unsandboxed, as tests/test_audit_replay.py
    replays it: the sandbox would re-import this test module)."""
    monkeypatch.setattr(PREDEPLOY, "SessionWorkflow", ChangedSessionWorkflow)
    monkeypatch.setattr(PREDEPLOY, "WORKFLOW_RUNNER", UnsandboxedWorkflowRunner())


async def test_an_incompatible_change_fails_the_gate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_changed_workflow(monkeypatch)
    assert await _main() == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAILED session-hist-")
    assert "nondeterminism" in lines[0].lower()
    count = len(list((SCRIPT.parents[1] / "tests/histories").glob("*.json"))) - 1
    assert lines[-1] == f"recorded histories: {count} replayed, {count} failed"


@pytest.fixture
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER, dev_server_existing_path=installed_binary("temporal"),
        dev_server_extra_args=search_attributes.dev_server_flags())
    yield env
    await env.shutdown()


async def _running_session(client: Client, pool: asyncpg.Pool, task_queue: str) -> str:
    session = booking(start=(datetime.now(UTC) + timedelta(days=2)).isoformat())
    await schedule_session(client, session, task_queue=task_queue, now=datetime.now(UTC))
    handle = client.get_workflow_handle(session.workflow_id)
    for _ in range(200):  # until the worker has run its first task (recorded "scheduled")
        history = await handle.fetch_history()
        if any(event.HasField("workflow_task_completed_event_attributes")
               for event in history.events):
            return session.workflow_id
        await asyncio.sleep(0.05)
    pytest.fail("the session's first workflow task never completed")


async def test_running_sessions_are_fetched_and_replayed(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = dev_server.client
    task_queue = f"tq-{uuid.uuid4().hex}"
    for name in ("MSR_CONFIG_FILE", "MSR_SECRETS_DIR", "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")):
        workflow_id = await _running_session(client, pool, task_queue)
        for _ in range(100):  # visibility lists it a moment after the start
            if [w async for w in client.list_workflows(PREDEPLOY.RUNNING)]:
                break
            await asyncio.sleep(0.1)
        assert await _main("--live", "10") == 0
        out = capsys.readouterr().out
        assert "running sessions on default: 1 replayed, 0 failed" in out

        _use_changed_workflow(monkeypatch)
        assert await _main("--live", "10") == 1
        out = capsys.readouterr().out
        assert f"FAILED {workflow_id}: " in out
        assert "running sessions on default: 1 replayed, 1 failed" in out
