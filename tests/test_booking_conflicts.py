"""A booking sent again under its id: identical is already scheduled, different is refused.

Through the application layer against the time-skipping server and a real worker: the held
booking is read back from the workflow's (encrypted) history, moved by any reschedule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.application import Application, ResultKind
from missed_session.application.bookings import differing_fields
from missed_session.config import Settings
from missed_session.domain.models import AuditEventType, Cancellation, Reschedule
from tests.support.factories import booking, booking_data
from tests.support.servers import TEST_KEYS
from tests.support.starter import future_start, recorded
from worker import new_worker


@pytest.fixture
async def app(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Application]:
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(settings, client=client, pool=pool) as application:
        yield application


def test_differing_fields_names_paths_and_compares_instants() -> None:
    held = booking()
    same_instant = held.model_copy(update={"start": held.start.astimezone(UTC)})
    assert differing_fields(held, same_instant) == ()
    changed = held.model_copy(update={
        "therapist_id": "t-bo",
        "client": held.client.model_copy(update={"phone": "+14155550111"}),
    })
    assert differing_fields(held, changed) == ("client.phone", "therapist_id")


async def test_identical_different_and_rescheduled_bookings(
    app: Application, time_skipping_env: WorkflowEnvironment,
) -> None:
    start = await future_start(time_skipping_env)
    data = booking_data(start=start.isoformat())
    session_id = data["session_id"]

    first = await app.schedule(data)
    assert (first.kind, first.session_id) == (ResultKind.STARTED, session_id)
    again = await app.schedule({**data, "start": start.astimezone(UTC).isoformat()})
    assert again.kind is ResultKind.ALREADY_SCHEDULED

    different = await app.schedule({**data, "risk_tier": "high", "duration_minutes": 30})
    assert different.kind is ResultKind.REFUSED
    assert different.differing_fields == ("duration_minutes", "risk_tier")
    assert "differing fields: duration_minutes, risk_tier" in different.message

    moved = start + timedelta(days=1)
    assert (await app.reschedule(session_id, Reschedule(start=moved))).ok
    await recorded(await app.store(), session_id, AuditEventType.RESCHEDULED)
    # The scheduler sends the booking as it now stands: the same session, nothing to do.
    current = await app.schedule({**data, "start": moved.isoformat()})
    assert current.kind is ResultKind.ALREADY_SCHEDULED
    # The old booking again is a different start now.
    stale = await app.schedule(data)
    assert (stale.kind, stale.differing_fields) == (ResultKind.REFUSED, ("start",))

    assert (await app.cancel(session_id, Cancellation())).ok  # leave nothing running


async def test_bad_booking_data_names_every_field(app: Application) -> None:
    data = booking_data()
    data["client"]["phone"] = "0123-4567"
    data["therapist_id"] = ""
    result = await app.schedule(data)
    assert result.kind is ResultKind.BAD_INPUT
    assert sorted(problem.dotted for problem in result.problems) == [
        "client.phone", "therapist_id"]
    assert "0123-4567" not in result.message
