"""Helpers first written for tests/test_inbound_texts.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from twilio.request_validator import RequestValidator

from activities.outreach import Sender
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import Application
from missed_session.channels import webhook
from missed_session.config import Settings
from tests.support.servers import TEST_KEYS, dev_server
from worker import new_worker

__all__ = ["dev_server"]  # the fixture, for the modules that import it from here

TWILIO_TOKEN = "twilio-test-auth-token"


WEBHOOK_SECRET = "webhook-test-secret"


PHONE = "+14155550177"


@pytest.fixture
async def api(dev_server: WorkflowEnvironment, pool: asyncpg.Pool,
              task_queue: str) -> AsyncIterator[tuple[str, Application]]:
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS,
                        twilio_auth_token=TWILIO_TOKEN, webhook_secret=WEBHOOK_SECRET)
    async with new_worker(dev_server.client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(settings, client=dev_server.client, pool=pool) as application:
        server = ApiServer(create_app(application, ApiSettings()))
        async with server:
            yield server.url, application


async def twilio(http: httpx.AsyncClient, url: str, body: str, sid: str, *,
                 phone: str = PHONE, signature: str | None = None) -> httpx.Response:
    params = {"From": phone, "To": "+15555550100", "Body": body, "MessageSid": sid,
              "AccountSid": "AC123"}
    full = f"{url}/inbound/twilio"
    signed = RequestValidator(TWILIO_TOKEN).compute_signature(full, params)
    return await http.post(full, content=urlencode(params), headers={
        "content-type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature if signature is not None else signed})


async def signed_webhook(http: httpx.AsyncClient, url: str, text: dict[str, str]) -> httpx.Response:
    body = json.dumps(text).encode()
    timestamp = str(int(time.time()))
    return await http.post(f"{url}/inbound/webhook", content=body, headers={
        "content-type": "application/json", webhook.TIMESTAMP_HEADER: timestamp,
        webhook.SIGNATURE_HEADER: webhook.sign(WEBHOOK_SECRET.encode(), timestamp, body)})

