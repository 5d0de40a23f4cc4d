"""Helpers first written for tests/test_outreach_activity.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.outreach import OutreachActivities, Sender
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.webhook import WebhookProvider
from missed_session.domain.models import EscalationRequest, OutreachRequest
from tests.support.factories import booking

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

