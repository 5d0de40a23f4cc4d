"""Only key holders talk to a session, and a session that stops outside the protocol is noticed.

On a real Temporal dev server, with the real worker: a Temporal client without the
encryption key (the attacker of issue 24, an unprivileged local user) sends an update to a
running session and is refused, the trail unchanged; then it terminates the session, and
the stopped-session follower raises an urgent notice to the clinical supervisor within a
minute, which `audit verify --all` lists.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.notices import notice_workflow_id
from activities.outreach import Sender
from missed_session.application.notices import load_roster
from missed_session.audit.cli import VerifyRequest, run_verify
from missed_session.audit.integrity import IntegrityAlarm, StoppedSessions
from missed_session.codec.encryption import EncryptionCodec, new_key, parse_key
from missed_session.domain.models import Cancellation, ClinicianDecision, SessionBooking
from missed_session.store import checkpoints
from missed_session.store.audit import AuditStore
from missed_session.store.chain import ChainRow
from missed_session.temporal import search_attributes
from missed_session.temporal.client import data_converter
from missed_session.temporal.scheduling import schedule_session
from tests.support.audit_chain import record_trail
from tests.support.audit_checkpoints import SIGNER, mark_safe, owner_rewrite
from tests.support.factories import booking_data
from tests.support.servers import dev_server
from worker import new_worker
from workflows.notice import NoticeWorkflow
from workflows.session import SessionWorkflow

__all__ = ["dev_server"]  # the fixture (tests/support/servers.py), used by name

pytestmark = pytest.mark.e2e

PRACTICE = Path(__file__).resolve().parents[1] / "docs" / "practice.example.toml"


def without_the_key(client: Client) -> Client:
    """The same server, a converter with no codec: what anyone who reaches Temporal has."""
    config = client.config()
    config["data_converter"] = pydantic_data_converter
    return Client(**config)


async def _scheduled(client: Client, task_queue: str) -> SessionBooking:
    """A session an hour away: running, asleep in `scheduled`."""
    now = datetime.now(UTC)
    booking = SessionBooking.model_validate(
        booking_data(start=(now + timedelta(hours=1)).isoformat()))
    await schedule_session(client, booking, task_queue=task_queue, now=now)
    return booking


async def _trail_rows(store: AuditStore, session_id: str, at_least: int = 1) -> list[ChainRow]:
    for _ in range(100):
        rows = await store.chain_rows(session_id)
        if len(rows) >= at_least:
            return rows
        await asyncio.sleep(0.1)
    pytest.fail("the session wrote no trail")


async def test_an_update_without_the_key_is_refused_and_the_trail_unchanged(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool,
) -> None:
    client, task_queue = dev_server.client, f"integrity-{uuid.uuid4().hex}"
    store = AuditStore(pool)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex at the front desk", "+15555550100")):
        booking = await _scheduled(client, task_queue)
        before = await _trail_rows(store, booking.session_id)
        forger = without_the_key(client).get_workflow_handle(booking.workflow_id)
        forged = ClinicianDecision(clinician_id="x' OR '1'='1", reason="client is fine")
        with capture_logs() as logs:
            with pytest.raises(WorkflowUpdateFailedError):
                await forger.execute_update(SessionWorkflow.add_note, forged)
            await forger.signal("client_responded", forged)  # no such signal; dropped anyway
        assert await store.chain_rows(booking.session_id) == before
        refused = [entry for entry in logs if entry["event"] == "payload_refused"]
        assert refused, logs
        assert refused[0]["reason"] == "not sealed"
        assert refused[0]["workflow_id"] == booking.workflow_id
        assert "client is fine" not in repr(refused)

        # A key holder's update still works: the session was not harmed.
        handle = client.get_workflow_handle(booking.workflow_id)
        note = ClinicianDecision(clinician_id="t-ana", reason="called the front desk")
        assert await handle.execute_update(SessionWorkflow.add_note, note) == "recorded"
        after = await store.chain_rows(booking.session_id)
        assert len(after) == len(before) + 1
        assert after[-1].data["clinician_id"] == "t-ana"


async def test_a_payload_sealed_with_an_unknown_key_is_refused_too(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool,
) -> None:
    """A forger who copies the sealed format with a key of their own gets no further."""
    client, task_queue = dev_server.client, f"integrity-{uuid.uuid4().hex}"
    store = AuditStore(pool)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex at the front desk", "+15555550100")):
        booking = await _scheduled(client, task_queue)
        before = await _trail_rows(store, booking.session_id)
        config = client.config()
        for key_id in ("test-key-1", "k-forger"):  # the real key's id, then another
            codec = EncryptionCodec({key_id: parse_key(key_id, new_key())}, key_id)
            config["data_converter"] = data_converter(codec)
            forger = Client(**config).get_workflow_handle(booking.workflow_id)
            with pytest.raises(WorkflowUpdateFailedError):
                await forger.execute_update(
                    SessionWorkflow.add_note, ClinicianDecision(clinician_id="t-x", reason="x"))
        assert await store.chain_rows(booking.session_id) == before


async def test_a_terminated_session_raises_an_urgent_notice_within_a_minute(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool,
) -> None:
    client, task_queue = dev_server.client, f"integrity-{uuid.uuid4().hex}"
    assert (await load_roster(pool, PRACTICE)).kind.value == "applied"
    store = AuditStore(pool)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex at the front desk", "+15555550100")):
        booking = await _scheduled(client, task_queue)
        await _trail_rows(store, booking.session_id)
        # A session cancelled by the protocol's own update ends with its `closed` row.
        cancelled = await _scheduled(client, task_queue)
        handle = client.get_workflow_handle(cancelled.workflow_id)
        await handle.execute_update(SessionWorkflow.cancel, Cancellation(reason="rebooked"))
        await asyncio.wait_for(handle.result(), timeout=30)
        alarm = IntegrityAlarm(client, pool, task_queue=task_queue)
        follower = StoppedSessions(client, pool, alarm, interval=timedelta(seconds=5))
        for _ in range(20):  # visibility lists the closed one a moment after it closes
            listed = [e async for e in client.list_workflows(
                f"WorkflowId = '{cancelled.workflow_id}' AND ExecutionStatus = 'Completed'")]
            if listed:
                break
            await asyncio.sleep(0.2)
        assert await follower.round() == []  # nothing stopped outside the protocol yet
        watching = asyncio.create_task(follower.run())
        try:
            # The attacker needs no key to terminate (Temporal's authorizer must stop that).
            await without_the_key(client).get_workflow_handle(booking.workflow_id).terminate()
            terminated = time.monotonic()
            notice_id = notice_workflow_id(f"{booking.session_id}/integrity-"
                                           f"{checkpoints.STOPPED}")
            notice = client.get_workflow_handle(notice_id)
            while time.monotonic() - terminated < 60:
                try:
                    description = await notice.describe()
                    break
                except RPCError:  # not started yet
                    await asyncio.sleep(0.5)
            else:
                pytest.fail("no notice within a minute of the termination")
            took = time.monotonic() - terminated
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        assert took < 60
        for _ in range(100):  # the ladder starts at the clinical supervisor
            view = await notice.query(NoticeWorkflow.state)
            if view.notified:
                break
            await asyncio.sleep(0.2)
        assert (view.target, view.notified) == ("supervisor", ("supervisor-maya",))
        attributes = description.typed_search_attributes
        assert attributes.get(search_attributes.NOTICE_PRIORITY) == "urgent"
        inbox = await pool.fetchrow("SELECT kind, priority, title FROM therapist_inbox"
                                    " WHERE key = $1",
                                    f"{booking.session_id}/integrity-{checkpoints.STOPPED}")
        assert inbox is not None
        assert (inbox["kind"], inbox["priority"]) == ("task", "urgent")
        assert "stopped outside the protocol" in inbox["title"]
        assert "Robin" not in inbox["title"]
    [(finding, _)] = await checkpoints.findings(pool)
    assert finding.session_id == booking.session_id
    assert "was terminated" in finding.problem
    verdict = await run_verify(VerifyRequest(None), store)
    assert not verdict.ok
    assert f"FOUND {booking.session_id}: stopped_outside_protocol" in verdict.text
    one = await run_verify(VerifyRequest(booking.session_id), store)
    assert not one.ok
    assert one.text.splitlines()[0].startswith(f"OK {booking.session_id}: ")  # the chain
    assert one.text.splitlines()[1].startswith(f"FOUND {booking.session_id}: stopped_outside")


async def test_a_trail_the_checkpointer_refuses_raises_an_urgent_notice(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, owner_database_url: str,
    tmp_path: Path,
) -> None:
    """The checkpointer's alarm is the same notice: a forged trail reaches the supervisor."""
    client, task_queue = dev_server.client, f"integrity-{uuid.uuid4().hex}"
    assert (await load_roster(pool, PRACTICE)).kind.value == "applied"
    store = AuditStore(pool)
    session_id = f"s-{uuid.uuid4().hex[:8]}"
    await record_trail(store, session_id, close=True)
    alarm = IntegrityAlarm(client, pool, task_queue=task_queue)
    heads = checkpoints.FileHeadSink(tmp_path / "heads")
    assert await checkpoints.Checkpointer(pool, SIGNER, heads=heads, alarm=alarm).round() == 1
    rows = await store.chain_rows(session_id)
    owner = await asyncpg.connect(owner_database_url)
    try:
        await owner_rewrite(owner, session_id, [*rows[:3], mark_safe(session_id, rows[2]),
                                                *rows[3:]])
    finally:
        await owner.close()
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex at the front desk", "+15555550100")):
        assert await checkpoints.Checkpointer(pool, SIGNER, heads=heads,
                                              alarm=alarm).round() == 0
        notice = client.get_workflow_handle(notice_workflow_id(
            f"{session_id}/integrity-{checkpoints.TRAIL_NOT_EXTENDING}"))
        for _ in range(100):
            view = await notice.query(NoticeWorkflow.state)
            if view.notified:
                break
            await asyncio.sleep(0.2)
        assert (view.target, view.notified) == ("supervisor", ("supervisor-maya",))
    title = await pool.fetchval("SELECT title FROM therapist_inbox WHERE key = $1",
                                f"{session_id}/integrity-{checkpoints.TRAIL_NOT_EXTENDING}")
    assert title.startswith(f"Audit trail of session {session_id} no longer matches")
