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

from activities.outreach import UNCERTAIN_REASON, Sender
from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
)
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookProvider,
    sign,
    verify,
)
from missed_session.domain.events import read
from missed_session.domain.models import CallResult, Outcome
from missed_session.store.audit import AuditStore
from tests.support.factories import booking, booking_data, daytime
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


def channel(url: str, **options: Any) -> WebhookProvider:
    clock: Callable[[], float] = lambda: NOW  # noqa: E731
    return WebhookProvider(url, SECRET, clock=clock, **options)


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


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_is_a_provider_failure_before_acceptance(
    practice: tuple[PracticeSystem, str], status: int,
) -> None:
    system, url = practice
    system.answers = [(status, {})]
    webhook = channel(url)
    try:
        with pytest.raises(ChannelUnavailableError, match=f"HTTP {status}"):
            await webhook.call("k", "s1", "+14155550123")
    finally:
        await webhook.close()
    assert len(system.requests) == 1  # one POST per try: the activity retries and counts


async def test_a_timeout_after_sending_is_uncertain(
    practice: tuple[PracticeSystem, str],
) -> None:
    system, url = practice
    system.answers = [(200, {"result": "answered"})]
    system.hang = True
    webhook = channel(url, timeout_seconds=0.3)
    try:
        with pytest.raises(DeliveryUncertainError):
            await webhook.call("k", "s1", "+14155550123")
    finally:
        await webhook.close()
    assert len(system.requests) == 1  # not sent again


@pytest.mark.parametrize(("status", "body"), [
    (504, {}),  # a gateway gave up waiting: the system behind it may have acted
    (200, {}),  # accepted, but no outcome
    (200, {"result": "maybe"}),
])
async def test_an_answer_without_an_outcome_is_uncertain(
    practice: tuple[PracticeSystem, str], status: int, body: dict[str, str],
) -> None:
    system, url = practice
    system.answers = [(status, body)]
    webhook = channel(url)
    try:
        with pytest.raises(DeliveryUncertainError):
            await webhook.deliver_message("k", "s1", "+14155550123", "Hi Sam")
    finally:
        await webhook.close()


async def test_a_voicemail_that_was_not_recorded_is_no_answer(
    practice: tuple[PracticeSystem, str],
) -> None:
    system, url = practice
    system.answers = [(200, {"result": "no_answer"})]
    webhook = channel(url)
    try:
        assert await webhook.leave_voicemail("k", "s1", "+14155550123", "Hi") is (
            CallResult.NO_ANSWER
        )
    finally:
        await webhook.close()


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


async def test_nothing_listening_is_a_provider_failure() -> None:
    webhook = channel("http://127.0.0.1:9/outreach")
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
    webhook = WebhookProvider(f"http://127.0.0.1:{port}/outreach", SECRET)
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
             getattr(read(e), "reason", None)) for e in events[3:7]] == [
        ("outreach_failed", "call", "invalid contact"),
        ("message_sent", "email", None),
        ("emergency_contact_called", None, ""),
        ("escalation_sent", None, None),
    ]
    assert [(p["kind"], p["idempotency_key"].rsplit("/", 1)[-1]) for p in received] == [
        ("call", "call"), ("email", "email"), ("message", "escalation"),
    ]
    assert received[1]["to"] == "robin@example.org"


async def test_an_uncertain_text_is_audited_as_such_and_no_second_text_goes_that_day(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        received.append(payload)
        if payload["kind"] == "text":  # takes the text, then the answer never comes
            await asyncio.sleep(30)
        if payload["kind"] in {"call", "message"}:
            return web.json_response({"result": "no_answer" if payload["kind"] == "call"
                                      else "answered"})
        return web.json_response({}, status=202)

    app = web.Application()
    app.router.add_post("/outreach", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    webhook = WebhookProvider(f"http://127.0.0.1:{port}/outreach", SECRET, timeout_seconds=0.5)
    phone = AtMostOnce(webhook, DeliveryLedger(pool))  # as the worker wires it
    data = booking_data()
    start = daytime(await time_skipping_env.get_current_time() + timedelta(hours=1))
    session = booking(
        start=start.isoformat(),
        client={**data["client"], "preferences": {"text": True}},
        protocol={"max_attempts": 2, "channels": ["text"], "attempt_spacing_minutes": 30},
    )
    try:
        async with new_worker(client, pool, task_queue=task_queue, sender=SENDER,
                              phone=phone, messages=phone):
            await client.execute_workflow(
                SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
            )
    finally:
        await webhook.close()
        await runner.cleanup()

    events = [read(e) for e in await AuditStore(pool).trail(session.session_id)]
    texts = [(type(e).__name__, getattr(e, "attempt", None), getattr(e, "reason", None))
             for e in events if getattr(e, "channel", None) == "text"]
    assert texts == [
        ("OutreachUncertain", 1, UNCERTAIN_REASON),  # not a refusal, not re-sent
        ("OutreachSkipped", 2, "a text was already sent today"),  # it may have arrived
    ]
    assert [p["kind"] for p in received].count("text") == 1
