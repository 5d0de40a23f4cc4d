"""Any text a carrier can send reaches the session or is kept, and never a log line.

Through the real HTTP routes (Twilio signed by the SDK's validator, the webhook channel by
its HMAC) to a real worker on the dev server: a high-risk client's session in outreach,
where a text is recorded as an unclear answer and outreach goes on, so one session takes
every body. Each body carries a canary; the captured logs (structlog, the standard
library's, and the process's stdout and stderr, where uvicorn's own error log goes) must
not hold it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import structlog
from temporalio.testing import WorkflowEnvironment

from demo import daytime_zone
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import Application
from missed_session.application.inbound import TextKind, classify, neutralised
from missed_session.application.kept_texts import KeptTexts, unseal
from missed_session.application.text_deliverer import TextDeliverer
from missed_session.channels import webhook
from missed_session.domain.models import AuditEventType
from missed_session.store.audit import AuditStore
from missed_session.store.kept_texts import Settlement
from tests.support.factories import booking_data
from tests.support.inbound_texts import WEBHOOK_SECRET, api, dev_server, signed_webhook, twilio
from tests.support.kept_texts import SENDER, in_outreach, until_event
from tests.support.kept_texts import settings as kept_settings
from worker import new_worker

__all__ = ["api", "dev_server"]  # the fixtures, shared with test_inbound_texts

CANARY = "zq7canary"
PHONE = "+14155550188"

BODIES = {
    "rlo": f"I'm ok \u202e{CANARY} call me",
    "bidi_marks": f"\u200f\u2066{CANARY}\u2069\u200e",
    "nul": f"at home\x00{CANARY}",
    "escape_and_c1": f"\x1b[31m{CANARY}\x85\x7f",
    "emoji": f"{CANARY} 👍🏽👨‍👩‍👧 ok",
    "longest": (CANARY + "x" * 1600)[:1600],
    "longer_than_a_carrier_sends": CANARY + "y" * 2000,
    "empty": "",
}


@pytest.mark.parametrize(("body", "expected"), [
    ("a\x00b", "a\ufffdb"), ("\u202eabc", "\ufffdabc"), ("line\nnext\ttab\r", "line\nnext\ttab\r"),
    ("👍🏽", "👍🏽"), ("\ud800x", "\ufffdx"), ("", ""), ("z" * 2000, "z" * 1600),
])
def test_neutralised(body: str, expected: str) -> None:
    assert neutralised(body) == expected


@pytest.mark.parametrize("body", ["STOP\u202e", "\u200fstop", "ST\x00OP"])
def test_invisible_characters_do_not_hide_an_opt_out(body: str) -> None:
    assert classify(body) is TextKind.OPT_OUT


async def high_risk_in_outreach(application: Application, pool: asyncpg.Pool) -> str:
    now = datetime.now(UTC)
    data = booking_data(start=(now + timedelta(seconds=1)).isoformat(), risk_tier="high",
                        protocol={"time_scale": 300, "attempt_spacing_minutes": 120})
    data["client"].update(phone=PHONE, time_zone=daytime_zone(now))
    session_id: str = data["session_id"]
    assert (await application.schedule(data)).ok
    store = AuditStore(pool)
    for _ in range(300):
        if AuditEventType.GRACE_PERIOD_EXPIRED in {e.event_type for e in
                                                   await store.trail(session_id)}:
            break
        await asyncio.sleep(0.1)
    sessions = await application.sessions()
    for _ in range(100):
        if await sessions.open_sessions(PHONE) == [session_id]:
            break
        await asyncio.sleep(0.1)
    assert await sessions.open_sessions(PHONE) == [session_id]
    return session_id


async def test_every_body_is_delivered_and_none_is_logged(
    api: tuple[str, Application], pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url, application = api
    session_id = await high_risk_in_outreach(application, pool)
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logged:
        async with httpx.AsyncClient(timeout=60) as http:
            for number, (name, body) in enumerate(BODIES.items()):
                by_twilio = await twilio(http, url, body, f"SMbody{number}", phone=PHONE)
                assert by_twilio.status_code == 200, (name, by_twilio.text)
                assert by_twilio.headers["content-type"].startswith("application/xml")
                by_webhook = await signed_webhook(http, url, {
                    "from": PHONE, "body": body, "id": f"whbody{number}"})
                assert by_webhook.status_code == 200, (name, by_webhook.text)
                assert by_webhook.json()["outcome"] in {"applied", "kept"}, name
            # a lone surrogate can only come as JSON; it is neutralised too
            raw = json.dumps({"from": PHONE, "body": "\ud800" + CANARY,
                              "id": "whsurrogate"}).encode()
            stamp = str(int(time.time()))
            lone = await http.post(f"{url}/inbound/webhook", content=raw, headers={
                "content-type": "application/json", webhook.TIMESTAMP_HEADER: stamp,
                webhook.SIGNATURE_HEADER: webhook.sign(WEBHOOK_SECRET.encode(), stamp, raw)})
            assert lone.status_code == 200, lone.text
            assert lone.json()["outcome"] in {"applied", "kept"}

    trail = await AuditStore(pool).trail(session_id)
    notes = [event.data for event in trail
             if event.event_type is AuditEventType.ANSWER_UNCLEAR]
    assert len(notes) == 2 * len(BODIES) + 1, [e.event_type for e in trail]
    stored = repr(notes)
    for unsafe in ("\\x00", "\\u202e", "\\x1b", "\\x85", "\\ud800", "\\u200f"):
        assert unsafe not in stored.lower()
    assert "👍🏽" in stored

    out, err = capfd.readouterr()
    for where, text in (("stdout", out), ("stderr", err), ("logging", caplog.text),
                        ("structlog", repr(logged))):
        assert CANARY not in text, where


async def test_a_text_with_control_characters_is_kept_neutralised_while_no_worker_runs(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    phone = "+14155550189"
    body = f"ok\x00\u202e{CANARY}"
    client = dev_server.client
    async with Application(kept_settings(task_queue), client=client,
                           pool=pool) as application:
        async with new_worker(client, pool, task_queue=task_queue, sender=SENDER):
            session_id = await in_outreach(application, pool, phone)
        caplog.set_level(logging.DEBUG)
        with structlog.testing.capture_logs() as logged:
            app = create_app(application, ApiSettings(), deliver_kept_texts=False)
            async with ApiServer(app) as server, httpx.AsyncClient(timeout=30) as http:
                kept = await twilio(http, server.url, body, "SMctl-kept", phone=phone)
                assert kept.status_code == 200, kept.text
        raw = await pool.fetchval("SELECT sealed FROM kept_texts WHERE message_id = $1",
                                  "SMctl-kept")
        assert await unseal(KeptTexts(application).codec, bytes(raw)) == (
            phone, "ok\ufffd\ufffd" + CANARY)
        async with new_worker(client, pool, task_queue=task_queue, sender=SENDER):
            deliverer = TextDeliverer(application)
            for _ in range(30):
                await deliverer.retry_now()
                if (await deliverer.deliver_due()).get(Settlement.DELIVERED):
                    break
            await until_event(AuditStore(pool), session_id, AuditEventType.CLOSED)
    out, err = capfd.readouterr()
    for where, text in (("stdout", out), ("stderr", err), ("logging", caplog.text),
                        ("structlog", repr(logged))):
        assert CANARY not in text, where
