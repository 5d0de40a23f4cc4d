"""Histories kept as long as trails: a closed session replays after Temporal deleted it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from demo import daytime_zone
from missed_session.audit import cli as audit_cli
from missed_session.audit.archive import HistoryArchiver, session_id_of
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.domain.models import ProtocolSettings, SessionBooking
from missed_session.store import history_archive
from missed_session.store.audit import AuditStore
from missed_session.temporal.scheduling import schedule_session
from tests.support.factories import booking_data
from tests.support.servers import dev_server
from worker import WORKFLOW_RUNNER, new_worker
from workflows.session import SessionWorkflow

__all__ = ["dev_server"]  # the fixture (tests/support/servers.py), used by name

pytestmark = pytest.mark.e2e


async def _reached_session(env: WorkflowEnvironment, pool: asyncpg.Pool,
                           task_queue: str) -> str:
    """One session run to its close on the dev server: the client answers the first call."""
    now = datetime.now(UTC)
    data = booking_data(start=(now + timedelta(seconds=1)).isoformat())
    data["client"]["time_zone"] = daytime_zone(now)
    data["protocol"] = ProtocolSettings(time_scale=3600).model_dump(mode="json")
    booking = SessionBooking.model_validate(data)
    assert booking.client.phone is not None
    await SimulatedPhone(pool).script(booking.client.phone, Behaviour.ANSWERS)
    _, handle = await schedule_session(env.client, booking, task_queue=task_queue, now=now)
    await asyncio.wait_for(handle.result(), timeout=60)
    return booking.session_id


async def test_a_closed_session_replays_after_its_history_is_deleted(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool,
) -> None:
    client, task_queue = dev_server.client, f"archive-{uuid.uuid4().hex}"
    store = AuditStore(pool)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex at the front desk", "+15555550100")):
        session_id = await _reached_session(dev_server, pool, task_queue)
    archiver = HistoryArchiver(client, pool)
    for _ in range(50):  # visibility lists a closed workflow a moment after it closes
        if await archiver.round() or await history_archive.archived(pool, session_id):
            break
        await asyncio.sleep(0.2)
    kept = await history_archive.archived(pool, session_id)
    assert kept is not None
    assert kept.status == "COMPLETED"
    assert "Robin" not in kept.history  # payloads still sealed
    assert await archiver.round() == 0  # once per session

    handle = client.get_workflow_handle(kept.workflow_id)
    await client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=kept.workflow_id, run_id=kept.run_id),
    ))
    for _ in range(900):  # deletion is asynchronous (about 30 s on the dev server)
        if not await _still_there(handle):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("Temporal did not delete the history")

    setup = audit_cli.ReplaySetup([SessionWorkflow], WORKFLOW_RUNNER)
    report = await audit_cli.replay_session(client, store, setup, session_id)
    assert report.replay_failure is None
    assert report.mismatches == []


async def _still_there(handle: WorkflowHandle[Any, Any]) -> bool:
    try:
        history = await handle.fetch_history()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    del history
    return True


def test_only_session_workflows_are_archived() -> None:
    assert session_id_of("session-s-1") == "s-1"
    assert session_id_of("notice-s-1") is None


async def test_the_service_cannot_change_an_archived_history(pool: asyncpg.Pool) -> None:
    entry = history_archive.ArchivedHistory("s-9", "session-s-9", "r", "COMPLETED", None,
                                            '{"events": []}')
    assert await history_archive.archive(pool, entry)
    assert not await history_archive.archive(pool, entry)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE history_archive SET history = '{}'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM history_archive")
