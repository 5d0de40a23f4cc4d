"""Inbound texts through the real HTTP API to a real worker on the Temporal dev server.

The dev server, because the sender is matched to the client's open sessions through
Temporal's visibility (a keyed hash of the number as a search attribute), which the
time-skipping server does not implement. Twilio's requests are signed with the SDK's own
`RequestValidator`; the webhook channel's with its HMAC scheme.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from demo import daytime_zone
from missed_session.application import Application
from missed_session.application.inbound import TextKind, classify
from missed_session.domain.models import AuditEventType
from missed_session.store.audit import AuditStore
from tests.support.factories import booking_data
from tests.support.inbound_texts import PHONE, api, dev_server, signed_webhook, twilio  # noqa: F401 - fixtures, used by name


async def events(store: AuditStore, session_id: str, wanted: AuditEventType) -> int:
    for _ in range(300):
        trail = await store.trail(session_id)
        if wanted in {event.event_type for event in trail}:
            return sum(event.event_type is wanted for event in trail)
        await asyncio.sleep(0.1)
    pytest.fail(f"no {wanted.value} in session {session_id}")


@pytest.mark.parametrize(("body", "kind"), [
    ("STOP", TextKind.OPT_OUT), (" stop ", TextKind.OPT_OUT), ("Unsubscribe", TextKind.OPT_OUT),
    ("HELP", TextKind.HELP), ("info", TextKind.HELP),
    ("I'm fine, running late", TextKind.RESPONSE), ("helpful?", TextKind.RESPONSE),
])
def test_classify(body: str, kind: TextKind) -> None:
    assert classify(body) is kind


async def test_help_stop_and_a_reply_reach_the_clients_open_session(
    api: tuple[str, Application], pool: asyncpg.Pool,  # noqa: F811
) -> None:
    url, application = api
    now = datetime.now(UTC)
    data = booking_data(start=(now + timedelta(seconds=1)).isoformat(),
                        protocol={"time_scale": 300, "attempt_spacing_minutes": 120})
    data["client"].update(phone=PHONE, time_zone=daytime_zone(now))
    session_id = data["session_id"]
    assert (await application.schedule(data)).ok
    store = AuditStore(pool)
    await events(store, session_id, AuditEventType.GRACE_PERIOD_EXPIRED)
    sessions = await application.sessions()
    for _ in range(50):  # visibility follows the start closely, not instantly
        if await sessions.open_sessions(PHONE) == [session_id]:
            break
        await asyncio.sleep(0.1)
    assert await sessions.open_sessions(PHONE) == [session_id]

    async with httpx.AsyncClient(timeout=30) as http:
        forged = await twilio(http, url, "STOP", "SM0", signature="bad")
        assert forged.status_code == 403

        helped = await twilio(http, url, "HELP", "SM1")
        assert helped.status_code == 200
        assert helped.headers["content-type"].startswith("application/xml")
        settings = application.settings
        assert (f"<Message>{settings.sender_name}: for help call {settings.callback_number}."
                " Reply STOP to stop texts.</Message>") in helped.text
        for word in ("therap", "counsel", "session", "appointment"):
            assert word not in helped.text.lower()

        stopped = await twilio(http, url, "stop", "SM2")
        assert stopped.status_code == 200
        assert "<Message>" not in stopped.text  # the carrier confirms STOP, not us
        assert await events(store, session_id, AuditEventType.OPTED_OUT) == 1

        stranger = await signed_webhook(http, url, {"from": "+14155550000", "body": "hi"})
        assert stranger.status_code == 200
        assert stranger.json()["outcome"] == "not_found"

        replied = await signed_webhook(http, url, {"from": PHONE, "body": "sorry, on my way",
                                                   "id": "wh-1"})
        assert replied.status_code == 200, replied.text
        assert replied.json() == {"kind": "response", "outcome": "applied", "reply": None,
                                  "sessions": 1}
        assert await events(store, session_id, AuditEventType.CLIENT_RESPONDED) == 1
        await events(store, session_id, AuditEventType.CLOSED)

        unsigned = await http.post(f"{url}/inbound/webhook", json={"from": PHONE, "body": "x"})
        assert unsigned.status_code == 403
