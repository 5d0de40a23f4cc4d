"""Cal.com and Calendly webhooks, signed, through a real HTTP server to a real worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.domain.models import AuditEventType
from missed_session.intake.signatures import sign_calcom, sign_calendly
from tests.support import intake_samples as samples
from tests.support.intake_stack import CALCOM_SECRET, CALENDLY_KEY, Stack, new_id, running_stack


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue) as running:
        yield running


async def calcom(stack: Stack, body: bytes, signature: str | None = None
                 ) -> tuple[int, dict[str, str]]:
    status, text = await stack.post(
        "/webhooks/calcom", body, **{"Content-Type": "application/json",
                                     "X-Cal-Signature-256": signature
                                     or sign_calcom(CALCOM_SECRET, body)})
    return status, json.loads(text)


async def calendly(stack: Stack, body: bytes, at: datetime | None = None,
                   key: str = CALENDLY_KEY) -> tuple[int, dict[str, str]]:
    signature = sign_calendly(key, body, at or datetime.now(UTC))
    status, text = await stack.post("/webhooks/calendly", body,
                                    **{"Content-Type": "application/json",
                                       "Calendly-Webhook-Signature": signature})
    return status, json.loads(text)


# -- Cal.com ----------------------------------------------------------------------------------


async def test_calcom_booking_created_once_and_signed_only(stack: Stack) -> None:
    uid = new_id("u")
    body = samples.calcom("BOOKING_CREATED", uid, stack.start)
    status, _ = await calcom(stack, body, signature="0" * 64)
    assert status == 401
    assert not await stack.exists(f"cal-{uid}")
    first = await calcom(stack, body)
    assert first[0] == 201, first
    assert await calcom(stack, body) == first
    assert await stack.wait_for(f"cal-{uid}", AuditEventType.SCHEDULED) == [
        AuditEventType.SCHEDULED]


async def test_calcom_without_phone_is_booked_by_email(stack: Stack) -> None:
    # Issue 25: an attendee with an email address and no phone is reached by email.
    uid = new_id("u")
    status, answer = await calcom(stack, samples.calcom("BOOKING_CREATED", uid, stack.start,
                                                        phone=None))
    assert status == 201, answer
    assert await stack.exists(f"cal-{uid}")


async def test_calcom_reschedule_then_cancel_under_the_new_uid(stack: Stack) -> None:
    old, new = new_id("u"), new_id("u")
    # Sender times in the past: one ahead of the receiver's clock is never trusted beyond it.
    created = datetime.now(UTC) - timedelta(minutes=10)
    assert (await calcom(stack, samples.calcom("BOOKING_CREATED", old, stack.start,
                                               created=created)))[0] == 201
    moved = samples.calcom("BOOKING_RESCHEDULED", new, stack.start + timedelta(hours=1),
                           reschedule_uid=old, created=created + timedelta(minutes=2))
    status, answer = await calcom(stack, moved)
    assert status == 200, answer
    assert answer["session_id"] == f"cal-{old}"
    await stack.wait_for(f"cal-{old}", AuditEventType.RESCHEDULED)
    assert not await stack.exists(f"cal-{new}")
    stale = samples.calcom("BOOKING_CREATED", old, stack.start + timedelta(hours=3),
                           created=created + timedelta(minutes=1))
    status, answer = await calcom(stack, stale)
    assert (status, "not applied" in answer["message"]) == (200, True)
    cancelled = samples.calcom("BOOKING_CANCELLED", new, stack.start,
                               created=created + timedelta(minutes=3))
    status, answer = await calcom(stack, cancelled)
    assert status == 200, answer
    found = await stack.wait_for(f"cal-{old}", AuditEventType.CLOSED)
    assert found.count(AuditEventType.RESCHEDULED) == 1
    assert AuditEventType.CANCELLED in found


async def test_calcom_no_shows(stack: Stack) -> None:
    uid = new_id("u")
    assert (await calcom(stack, samples.calcom("BOOKING_CREATED", uid, stack.start)))[0] == 201
    for trigger in ("AFTER_GUESTS_CAL_VIDEO_NO_SHOW", "BOOKING_NO_SHOW_UPDATED"):
        status, answer = await calcom(stack, samples.calcom(trigger, uid, stack.start))
        assert (status, answer["outcome"]) == (200, "recorded"), answer
    # a host no-show stands the session down: tests/test_therapist_absent.py
    assert await stack.wait_for(f"cal-{uid}", AuditEventType.SCHEDULED) == [
        AuditEventType.SCHEDULED]
    unmarked = samples.calcom("BOOKING_NO_SHOW_UPDATED", uid, stack.start,
                              attendees=[{"email": "sam@example.com", "noShow": False}],
                              message="x_unmarked_as_no_show")
    status, answer = await calcom(stack, unmarked)
    assert (status, answer["outcome"]) == (200, "applied")
    found = await stack.wait_for(f"cal-{uid}", AuditEventType.CLOSED)
    assert AuditEventType.CHECKED_IN in found
    assert AuditEventType.OUTREACH_ATTEMPTED not in found


# -- Calendly ---------------------------------------------------------------------------------


async def test_calendly_created_once_and_signature_checked(stack: Stack) -> None:
    invitee = new_id("I")
    body = samples.calendly("invitee.created", invitee, stack.start)
    stale = datetime.now(UTC) - timedelta(minutes=10)
    assert (await calendly(stack, body, at=stale))[0] == 401
    assert (await calendly(stack, body, key="wrong"))[0] == 401
    assert not await stack.exists(f"calendly-{invitee}")
    first = await calendly(stack, body)
    assert first[0] == 201, first
    assert await calendly(stack, body) == first


async def test_calendly_reschedule_pair_moves_one_session(stack: Stack) -> None:
    old, new = new_id("I"), new_id("I")
    assert (await calendly(stack, samples.calendly("invitee.created", old, stack.start)))[0] \
        == 201
    canceled = samples.calendly("invitee.canceled", old, stack.start, rescheduled=True,
                                new_invitee=new)
    status, answer = await calendly(stack, canceled)
    assert (status, answer["outcome"]) == (200, "recorded")
    created = samples.calendly("invitee.created", new, stack.start + timedelta(hours=1),
                               old_invitee=old)
    status, answer = await calendly(stack, created)
    assert status == 200, answer
    assert answer["session_id"] == f"calendly-{old}"
    await stack.wait_for(f"calendly-{old}", AuditEventType.RESCHEDULED)
    assert not await stack.exists(f"calendly-{new}")
    assert await stack.exists(f"calendly-{old}")


async def test_calendly_cancel_and_no_shows(stack: Stack) -> None:
    one, two = new_id("I"), new_id("I")
    for invitee in (one, two):
        body = samples.calendly("invitee.created", invitee, stack.start)
        assert (await calendly(stack, body))[0] == 201
    status, answer = await calendly(stack, samples.calendly("invitee.canceled", one,
                                                            stack.start))
    assert (status, answer["outcome"]) == (200, "applied")
    assert AuditEventType.CANCELLED in await stack.wait_for(f"calendly-{one}",
                                                            AuditEventType.CLOSED)
    status, answer = await calendly(stack, samples.calendly("invitee_no_show.created", two,
                                                            stack.start))
    assert (status, answer["outcome"]) == (200, "recorded")
    status, answer = await calendly(stack, samples.calendly("invitee_no_show.deleted", two,
                                                            stack.start))
    assert (status, answer["outcome"]) == (200, "applied")
    assert AuditEventType.CHECKED_IN in await stack.wait_for(f"calendly-{two}",
                                                             AuditEventType.CLOSED)


async def test_calendly_cancel_before_booking(stack: Stack) -> None:
    invitee = new_id("I")
    status, answer = await calendly(stack, samples.calendly("invitee.canceled", invitee,
                                                            stack.start))
    assert (status, answer["outcome"]) == (200, "recorded")
    status, answer = await calendly(stack, samples.calendly("invitee.created", invitee,
                                                            stack.start))
    assert (status, answer["outcome"]) == (200, "recorded")
    assert not await stack.exists(f"calendly-{invitee}")
