"""The demo day end to end: dev server, real worker, embedded PostgreSQL, real time.

Time runs for real here (compressed by the time-scale setting), so this is the one place
where the simulated phone's call-back dispatcher and the front desk's timed signals meet
the workflow as they do in the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import structlog
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from demo import DEMO_DAY, run_demo_day, temporal_cli
from missed_session.domain.events import Closed
from missed_session.domain.models import AuditEventType, Outcome
from missed_session.log_setup import configure_logging
from missed_session.store.audit import AuditStore
from missed_session.temporal.client import service_runtime
from tests.support.end_to_end import free_port, scrape
from tests.support.factories import read_as
from tests.support.servers import TEST_CONVERTER, dev_server
from worker import callback_dispatcher, new_worker

__all__ = ["dev_server"]  # the fixture (tests/support/servers.py), used by name

pytestmark = pytest.mark.e2e

TIME_SCALE = 300.0
"""A protocol minute lasts 0.2 s: the 15-minute grace period is 3 s."""


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The service's real logging pipeline, at debug level, into a buffer."""
    buffer = io.StringIO()
    configure_logging("json", "debug", stream=buffer)
    yield buffer
    logging.getLogger().handlers.clear()
    logging.getLogger().setLevel(logging.WARNING)
    structlog.reset_defaults()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum a metric's samples whose labels include `labels`."""
    total = 0.0
    for match in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


async def test_demo_day_reaches_every_outcome(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    captured_logs: io.StringIO,
) -> None:
    metrics_port = free_port()
    client = await Client.connect(
        dev_server.client.service_client.config.target_host,
        data_converter=TEST_CONVERTER,
        runtime=service_runtime(metrics_port),
    )
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
    notices = [line for line in lines if line.startswith("notice ")]
    assert "replied ACK by SMS: acknowledged by therapist-ana" in notices[0], notices
    assert "notified in turn therapist-ben (therapist), oncall-" in notices[1], notices
    assert notices[1].endswith("supervisor-maya (supervisor); NoticeState=exhausted"), notices

    store = AuditStore(pool)
    for session_id, outcome in outcomes.items():
        trail = await store.trail(session_id)
        assert [e.sequence for e in trail] == list(range(1, len(trail) + 1)), session_id
        assert trail[0].event_type is AuditEventType.SCHEDULED
        assert trail[-1].event_type is AuditEventType.CLOSED
        assert read_as(trail[-1], Closed).outcome is outcome

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
    # ... and the notice that ran out of steps, by its own.
    escalated = {f"notice-{sid}/no-show-alert" for sid, outcome in outcomes.items()
                 if outcome is Outcome.UNREACHABLE_ESCALATED}
    exhausted: set[str] = set()
    for _ in range(50):
        exhausted = {w.id async for w in client.list_workflows('NoticeState="exhausted"')}
        if exhausted:
            break
        await asyncio.sleep(0.2)
    assert exhausted == escalated, exhausted

    # What Prometheus sees: the demo day's counts.
    text = await scrape(metrics_port)
    for expected in DEMO_DAY:
        assert metric(text, "missed_session_sessions_closed", outcome=expected.expected.value) == 1
    assert metric(text, "missed_session_no_shows") == 4
    assert metric(text, "missed_session_escalations", result="sent") == 1
    assert metric(text, "missed_session_escalations", result="blocked") == 1
    assert metric(text, "missed_session_outreach_attempts", channel="call", result="no_answer") >= 7
    assert metric(text, "missed_session_first_outreach_delay_count") == 4

    # And no health data in the logs of the whole day.
    everything = captured_logs.getvalue()
    records = [json.loads(line) for line in everything.splitlines() if line.startswith("{")]
    assert any(r.get("logger", "").startswith("temporalio") for r in records)  # SDK logs too
    for secret in ("Robin", "Noor", "Jules", "Mika", "+155555501", "@example.org",
                   "returned the call"):
        assert secret not in everything, secret
