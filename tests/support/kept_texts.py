"""Helpers first written for tests/test_kept_texts.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from activities.outreach import Sender
from demo import daytime_zone
from missed_session.application import Application
from missed_session.config import Settings
from missed_session.domain.models import AuditEventType
from missed_session.store.audit import AuditStore
from tests.support.factories import booking_data
from tests.support.inbound_texts import TWILIO_TOKEN, WEBHOOK_SECRET
from tests.support.servers import TEST_KEYS

SENDER = Sender("Alex", "+15555550100")


def settings(task_queue: str, **overrides: object) -> Settings:
    return Settings.model_validate({
        "task_queue": task_queue, "encryption_keys": TEST_KEYS,
        "twilio_auth_token": TWILIO_TOKEN, "webhook_secret": WEBHOOK_SECRET,
        "inbound_text_wait_seconds": 1.0, **overrides})


async def until_event(store: AuditStore, session_id: str, wanted: AuditEventType) -> None:
    for _ in range(300):
        if wanted in {event.event_type for event in await store.trail(session_id)}:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"no {wanted.value} in session {session_id}")


async def in_outreach(application: Application, pool: asyncpg.Pool, phone: str) -> str:
    """A session booked for `phone`, past its grace period, found by number (worker up)."""
    now = datetime.now(UTC)
    data = booking_data(start=(now + timedelta(seconds=1)).isoformat(),
                        protocol={"time_scale": 300, "attempt_spacing_minutes": 120})
    data["client"].update(phone=phone, time_zone=daytime_zone(now))
    session_id: str = data["session_id"]
    assert (await application.schedule(data)).ok
    await until_event(AuditStore(pool), session_id, AuditEventType.GRACE_PERIOD_EXPIRED)
    sessions = await application.sessions()
    for _ in range(50):  # visibility follows the start closely, not instantly
        if await sessions.open_sessions(phone) == [session_id]:
            break
        await asyncio.sleep(0.1)
    assert await sessions.open_sessions(phone) == [session_id]
    return session_id

