"""The signed webhook channel against a real local HTTP server (aiohttp, 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    InvalidContactError,
)
from missed_session.channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    sign,
    verify,
)
from missed_session.domain.events import read
from missed_session.domain.models import CallResult, Outcome
from missed_session.store.audit import AuditStore
from tests.factories import booking, booking_data, daytime
from worker import new_worker
from workflows.session import SessionWorkflow

SECRET = b"test-only-webhook-secret"
SENDER = Sender("Alex", "+15555550100")
NOW = 1_800_000_000.0


@dataclass
class PracticeSystem:
    """A stand-in for the practice's phone system: records requests, answers as scripted."""

    answers: list[tuple[int, Any]] = field(default_factory=list)
    """(status, JSON body) per request, in order; the last one repeats."""
    requests: list[web.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    hang: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        self.bodies.append(await request.read())
        if self.hang and len(self.requests) == 1:
            await asyncio.sleep(2)
        status, body = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return web.json_response(body, status=status)


@pytest.fixture
async def practice() -> AsyncIterator[tuple[PracticeSystem, str]]:
    system = PracticeSystem()
    app = web.Application()
    app.router.add_post("/outreach", system.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield system, f"http://127.0.0.1:{port}/outreach"
    await runner.cleanup()


def channel(url: str, **options: Any) -> WebhookChannel:
    clock: Callable[[], float] = lambda: NOW  # noqa: E731
    return WebhookChannel(url, SECRET, backoff_seconds=0.01, clock=clock, **options)


async def test_a_call_is_a_signed_json_post(practice: tuple[PracticeSystem, str]) -> None:
    system, url = practice
    system.answers = [(200, {"result": "no_answer"})]
    webhook = channel(url)
    try:
        result = await webhook.call("session-s1/attempt-1/call", "s1", "+14155550123")
    finally:
        await webhook.close()

    assert result is CallResult.NO_ANSWER
    (request,), (body,) = system.requests, system.bodies
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "session-s1/attempt-1/call"
    assert request.headers[TIMESTAMP_HEADER] == str(int(NOW))
    signature = request.headers[SIGNATURE_HEADER]
    assert signature == sign(SECRET, str(int(NOW)), body)
    assert verify(SECRET, request.headers[TIMESTAMP_HEADER], body, signature, now=NOW + 60)
    assert json.loads(body) == {
        "idempotency_key": "session-s1/attempt-1/call", "session_id": "s1", "kind": "call",
        "to": "+14155550123",
    }


def test_a_tampered_or_stale_request_does_not_verify() -> None:
    body = b'{"kind":"text"}'
    good = sign(SECRET, "1800000000", body)
    assert verify(SECRET, "1800000000", body, good, now=NOW)
    assert not verify(SECRET, "1800000000", body + b" ", good, now=NOW)
    assert not verify(b"another secret", "1800000000", body, good, now=NOW)
    assert not verify(SECRET, "1800000000", body, good, now=NOW + 301)
    assert not verify(SECRET, "not-a-time", body, good, now=NOW)


async def test_texts_and_email_carry_their_content(practice: tuple[PracticeSystem, str]) -> None:
    system, url = practice
    system.answers = [(202, {}), (202, {}), (200, {"result": "answered"})]
    webhook = channel(url)
    try:
        await webhook.send_text("k-text", "s1", "+14155550123", "Hi Robin")
        await webhook.send_email("k-email", "s1", "robin@example.org", "Checking in", "Hi")
        assert await webhook.leave_voicemail(
            "k-vm", "s1", "+14155550123", "Hi Robin, call us"
        ) is CallResult.ANSWERED
    finally:
        await webhook.close()
    kinds = [json.loads(body) for body in system.bodies]
    assert [(b["kind"], b["to"], b["text"]) for b in kinds] == [
        ("text", "+14155550123", "Hi Robin"), ("email", "robin@example.org", "Hi"),
        ("voicemail", "+14155550123", "Hi Robin, call us"),
    ]
    assert kinds[1]["subject"] == "Checking in"


async def test_5xx_is_retried_with_backoff(practice: tuple[PracticeSystem, str]) -> None:
    system, url = practice
    system.answers = [(503, {}), (500, {}), (200, {"result": "answered"})]
    webhook = channel(url)
    try:
        assert await webhook.call("k", "s1", "+14155550123") is CallResult.ANSWERED
    finally:
        await webhook.close()
    assert len(system.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in system.requests} == {"k"}


async def test_persistent_5xx_is_an_outage(practice: tuple[PracticeSystem, str]) -> None:
    system, url = practice
    system.answers = [(502, {})]
    webhook = channel(url, attempts=2)
    try:
        with pytest.raises(ChannelUnavailableError, match="HTTP 502"):
            await webhook.send_text("k", "s1", "+14155550123", "Hi")
    finally:
        await webhook.close()
    assert len(system.requests) == 2


async def test_a_timeout_is_retried(practice: tuple[PracticeSystem, str]) -> None:
    system, url = practice
    system.answers = [(200, {"result": "answered"})]
    system.hang = True
    webhook = channel(url, timeout_seconds=0.3)
    try:
        assert await webhook.call("k", "s1", "+14155550123") is CallResult.ANSWERED
    finally:
        await webhook.close()
    assert len(system.requests) == 2


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, {"error": "bad_request"}, ChannelRejectedError),
    (401, {}, ChannelRejectedError),
    (422, {"error": "invalid_contact"}, InvalidContactError),
    (404, {"error": "invalid_contact"}, InvalidContactError),
])
async def test_4xx_is_not_retried(practice: tuple[PracticeSystem, str], status: int,
                                  body: dict[str, str], error: type[Exception]) -> None:
    system, url = practice
    system.answers = [(status, body)]
    webhook = channel(url)
    try:
        with pytest.raises(error):
            await webhook.send_text("k", "s1", "+14155550123", "Hi")
    finally:
        await webhook.close()
    assert len(system.requests) == 1


async def test_nothing_listening_is_an_outage() -> None:
    webhook = channel("http://127.0.0.1:9/outreach", attempts=2)
    try:
        with pytest.raises(ChannelUnavailableError):
            await webhook.call("k", "s1", "+14155550123")
    finally:
        await webhook.close()


# -- through the workflow ------------------------------------------------------------------


async def test_the_workflow_moves_from_an_invalid_number_to_email_over_the_webhook(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify(SECRET, request.headers[TIMESTAMP_HEADER], body,
                      request.headers[SIGNATURE_HEADER], now=time.time())
        payload = json.loads(body)
        received.append(payload)
        if payload["kind"] == "call":
            return web.json_response({"error": "invalid_contact"}, status=422)
        if payload["kind"] == "message":  # the emergency contact's call: its outcome
            return web.json_response({"result": "answered"})
        return web.json_response({}, status=202)

    app = web.Application()
    app.router.add_post("/outreach", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    webhook = WebhookChannel(f"http://127.0.0.1:{port}/outreach", SECRET)
    data = booking_data()
    start = daytime(await time_skipping_env.get_current_time() + timedelta(hours=1))
    session = booking(
        start=start.isoformat(),
        client={**data["client"], "preferences": {"text": True, "email": True}},
        protocol={"max_attempts": 1, "channels": ["call", "voicemail", "text", "email"]},
    )
    try:
        async with new_worker(client, pool, task_queue=task_queue, sender=SENDER,
                              phone=webhook, messages=webhook):
            result = await client.execute_workflow(
                SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
            )
    finally:
        await webhook.close()
        await runner.cleanup()

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await AuditStore(pool).trail(session.session_id)
    assert [(e.event_type.value, getattr(read(e), "channel", None),
             getattr(read(e), "reason", None)) for e in events[3:6]] == [
        ("outreach_failed", "call", "invalid contact"),
        ("message_sent", "email", None),
        ("escalation_sent", None, None),
    ]
    assert [(p["kind"], p["idempotency_key"].rsplit("/", 1)[-1]) for p in received] == [
        ("call", "call"), ("email", "email"), ("message", "escalation"),
    ]
    assert received[1]["to"] == "robin@example.org"
