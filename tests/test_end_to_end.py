"""The demo day end to end: dev server, real worker, embedded PostgreSQL, real time.

Time runs for real here (compressed by the time-scale setting), so this is the one place
where the simulated phone's call-back dispatcher and the front desk's timed signals meet
the workflow as they do in the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from demo import DEMO_DAY, run_demo_day, temporal_cli
from missed_session import search_attributes
from missed_session.domain.models import AuditEventType
from missed_session.store.audit import AuditStore
from tests.conftest import TEST_CONVERTER
from worker import callback_dispatcher, new_worker

pytestmark = pytest.mark.e2e

TIME_SCALE = 300.0
"""A protocol minute lasts 0.2 s: the 15-minute grace period is 3 s."""


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER,
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=search_attributes.dev_server_flags(),
    )
    yield env
    await env.shutdown()


async def test_demo_day_reaches_every_outcome(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    client = dev_server.client
    task_queue = f"e2e-{uuid.uuid4().hex}"
    dispatcher = asyncio.create_task(callback_dispatcher(client, pool).run())
    lines: list[str] = []
    try:
        async with new_worker(client, pool, task_queue=task_queue,
                              sender=Sender("Alex at the front desk", "+15555550100")):
            outcomes = await asyncio.wait_for(
                run_demo_day(client, pool, task_queue=task_queue, time_scale=TIME_SCALE,
                             say=lines.append),
                timeout=120,
            )
    finally:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher

    assert sorted(o.value for o in outcomes.values()) == sorted(s.expected.value for s in DEMO_DAY)
    assert not [line for line in lines if "EXPECTED" in line], lines

    store = AuditStore(pool)
    for session_id, outcome in outcomes.items():
        trail = await store.trail(session_id)
        assert [e.sequence for e in trail] == list(range(1, len(trail) + 1)), session_id
        assert trail[0].event_type is AuditEventType.SCHEDULED
        assert trail[-1].event_type is AuditEventType.CLOSED
        assert trail[-1].data["outcome"] == outcome.value

    # The operator's view: `temporal workflow list` on the same server lists every session.
    target = client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        temporal_cli(), "workflow", "list", "--address", target, "--output", "json",
        "--query", "WorkflowType='SessionWorkflow'",
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    listed_ids = {row["execution"]["workflowId"] for row in json.loads(stdout)}
    assert {f"session-{sid}" for sid in outcomes} <= listed_ids

    # A supervisor's question, answered by search attributes alone.
    high_risk = [s for s in DEMO_DAY if s.risk_tier.value == "high"]
    query = 'RiskTier="high" AND EscalationLevel="sent" AND SessionStatus="closed"'
    found: set[str] = set()
    for _ in range(50):
        found = {w.id async for w in client.list_workflows(query)}
        if len(found) >= len(high_risk):
            break
        await asyncio.sleep(0.2)
    assert len(found) == len(high_risk), found
