"""The outreach activities under a real Temporal server, against a local practice system.

Each test runs one step (an outreach activity) from a small workflow that retries it the
way contract A says the session workflow does: no maximum of attempts, a short backoff and
a heartbeat timeout. The webhook receiver speaks the real wire format and counts what it
was asked to deliver; the delivery ledger sits in a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.outreach import (
    CHANNEL_FAILED,
    CHANNEL_REJECTED,
    DELIVERY_UNCERTAIN,
    UNCERTAIN_REASON,
    OutreachActivities,
    Sender,
    TextPolicyActivities,
)
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.webhook import WebhookProvider
from missed_session.domain.contact_window import local_day
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    CallResult,
    EscalationRequest,
    OutreachRequest,
    TextCheck,
)
from missed_session.store.audit import AuditStore
from tests.factories import booking

SECRET = b"test-only-webhook-secret"
SENDER = Sender("Alex", "+15555550100")
PROVIDER_TRIES = 3

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(milliseconds=400),
)
"""Contract A's policy for outreach, with test-sized intervals: no maximum of attempts."""


@dataclass(frozen=True)
class Step:
    """Which activity to run, on which request."""

    activity: str
    outreach: OutreachRequest | None = None
    escalation: EscalationRequest | None = None


@workflow.defn(sandboxed=False)
class StepWorkflow:
    """Runs one outreach step with contract A's retry policy and a heartbeat timeout."""

    @workflow.run
    async def run(self, step: Step) -> str | None:
        argument = step.outreach if step.outreach is not None else step.escalation
        result = await workflow.execute_activity(
            step.activity, argument,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=2),
            retry_policy=STEP_RETRY,
        )
        if isinstance(result, dict):
            result.pop("at", None)  # when the try went out: tests/test_step_time.py
        return None if result is None else str(result)


@dataclass
class PracticeSystem:
    """The practice's phone system: answers each request as scripted, in order."""

    script: list[str] = field(default_factory=lambda: ["ok"])
    """Per request (the last repeats): ok, slow-ok, 503, 400, hang, drop."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    while_sending: Callable[[], Awaitable[None]] | None = None
    """Run after a request arrives, before it is answered (a fault to inject)."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        if self.while_sending is not None:
            await self.while_sending()
        action = self.script[min(len(self.requests), len(self.script)) - 1]
        kind = self.requests[-1]["kind"]
        if action == "hang":  # took the request, never answers
            await asyncio.sleep(30)
        if action == "drop":  # took the request, then the connection is lost
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if action == "503":
            return web.json_response({"error": "unavailable"}, status=503)
        if action == "400":
            return web.json_response({"error": "bad_request"}, status=400)
        if action == "slow-ok":  # longer than the heartbeat timeout
            await asyncio.sleep(4)
        if kind in {"call", "voicemail", "message"}:
            return web.json_response({"result": "answered"})
        return web.json_response({}, status=202)


@pytest.fixture
async def practice() -> AsyncIterator[tuple[PracticeSystem, str]]:
    system = PracticeSystem()
    app = web.Application()
    app.router.add_post("/outreach", system.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield system, f"http://127.0.0.1:{port}/outreach"
    await runner.cleanup()


def text_step(session_id: str) -> Step:
    session = booking(session_id=session_id)
    request = OutreachRequest(
        idempotency_key=f"{session.workflow_id}/attempt-1/text",
        session_id=session.session_id, client=session.client,
    )
    return Step("send_text", outreach=request)


async def run_step(client: Client, pool: asyncpg.Pool, url: str, step: Step,
                   *, timeout_seconds: float = 10.0) -> str | None:
    webhook = WebhookProvider(url, SECRET, timeout_seconds=timeout_seconds)
    channel = AtMostOnce(webhook, DeliveryLedger(pool))
    outreach = OutreachActivities(channel, SENDER, channel, provider_tries=PROVIDER_TRIES,
                                  heartbeat_seconds=0.3)
    task_queue = f"tq-{uuid.uuid4().hex}"
    try:
        async with Worker(
            client, task_queue=task_queue, workflows=[StepWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
            activities=[outreach.call_client, outreach.leave_voicemail, outreach.send_text,
                        outreach.send_email, outreach.call_emergency_contact],
        ):
            return await client.execute_workflow(
                StepWorkflow.run, step, id=f"step-{uuid.uuid4().hex}", task_queue=task_queue,
            )
    finally:
        await webhook.close()


def failure_type(error: WorkflowFailureError) -> str | None:
    cause = error.cause
    assert isinstance(cause, ActivityError)
    assert isinstance(cause.cause, ApplicationError)
    return cause.cause.type


async def ledger_row(pool: asyncpg.Pool, step: Step) -> tuple[str, str | None] | None:
    assert step.outreach is not None
    row = await pool.fetchrow(
        "SELECT state, result FROM channel_deliveries WHERE idempotency_key = $1",
        step.outreach.idempotency_key,
    )
    return None if row is None else (row["state"], row["result"])


async def test_a_provider_that_keeps_failing_fails_the_step_after_k_tries(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],
) -> None:
    system, url = practice
    system.script = ["503"]
    step = text_step("k-failures")
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step)
    assert failure_type(failed.value) == CHANNEL_FAILED
    # Counted across the activity's retries (heartbeat details), not per try.
    assert len(system.requests) == PROVIDER_TRIES
    assert await ledger_row(pool, step) is None  # refused each time: nothing held back


async def test_a_provider_that_recovers_within_k_tries_delivers_once(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],
) -> None:
    system, url = practice
    system.script = ["503", "503", "ok"]
    step = text_step("recovers")
    await run_step(client, pool, url, step)
    assert len(system.requests) == PROVIDER_TRIES
    assert await ledger_row(pool, step) == ("done", "sent")


async def test_a_refusal_is_not_retried(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],
) -> None:
    system, url = practice
    system.script = ["400"]
    step = text_step("refused")
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step)
    assert failure_type(failed.value) == CHANNEL_REJECTED
    assert len(system.requests) == 1
    assert await ledger_row(pool, step) is None


@pytest.mark.parametrize("action", ["hang", "drop"])
async def test_a_step_the_provider_may_have_accepted_is_uncertain_and_not_resent(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str], action: str,
) -> None:
    system, url = practice
    system.script = [action, "ok"]
    step = text_step(f"uncertain-{action}")
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step, timeout_seconds=0.5)
    assert failure_type(failed.value) == DELIVERY_UNCERTAIN
    assert len(system.requests) == 1  # never sent again
    assert await ledger_row(pool, step) == ("pending", "uncertain")  # the claim is kept


async def test_a_step_left_pending_by_a_dead_worker_is_uncertain(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],
) -> None:
    system, url = practice
    step = text_step("dead-worker")
    assert step.outreach is not None
    await pool.execute(
        "INSERT INTO channel_deliveries (idempotency_key, state) VALUES ($1, 'pending')",
        step.outreach.idempotency_key,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step)
    assert failure_type(failed.value) == DELIVERY_UNCERTAIN
    assert system.requests == []


async def test_a_slow_provider_is_waited_for_with_heartbeats(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],
) -> None:
    # The answer takes 4 s, twice the heartbeat timeout: only heartbeats keep the try alive
    # (otherwise its retry would find the step pending and call it uncertain).
    system, url = practice
    system.script = ["slow-ok"]
    session = booking(session_id="slow")
    contact = session.client.emergency_contact
    assert contact is not None
    step = Step("call_emergency_contact", escalation=EscalationRequest(
        idempotency_key=f"{session.workflow_id}/escalation", session_id=session.session_id,
        client_ref=session.client.ref, client_first_name=session.client.first_name,
        contact=contact,
    ))
    # A client the directory does not know: the booking's contact, no consent record.
    assert await run_step(client, pool, url, step) == str(
        {"result": CallResult.ANSWERED.value, "consent_record": None})
    assert [r["kind"] for r in system.requests] == ["message"]


async def test_a_text_whose_delivery_is_uncertain_counts_for_the_one_a_day_rule(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    failed_at = datetime(2026, 11, 28, 18, 15, tzinfo=UTC)  # 10:15 in Los Angeles
    for session_id, reason in [("s-uncertain", UNCERTAIN_REASON),
                               ("s-failed", "channel failed after retries")]:
        for sequence, (event_type, data) in enumerate([
            (AuditEventType.SCHEDULED, {"client_ref": f"c-{session_id}"}),
            (AuditEventType.OUTREACH_FAILED, {"attempt": 1, "channel": "text",
                                              "reason": reason}),
        ], start=1):
            await store.record([AuditEvent(session_id=session_id, sequence=sequence,
                                          event_type=event_type, occurred_at=failed_at,
                                          data=data)])
    start, end = local_day(failed_at + timedelta(hours=2), "America/Los_Angeles")
    policy = TextPolicyActivities(pool)

    async def refusal(client_ref: str) -> str | None:
        check = TextCheck(client_ref=client_ref, day_start=start, day_end=end)
        answer: str | None = await ActivityEnvironment().run(policy.text_refusal, check)
        return answer

    # It may have reached the client: no second text today.
    assert await refusal("c-s-uncertain") == "a text was already sent today"
    assert await refusal("c-s-failed") is None  # refused by the provider: it did not
