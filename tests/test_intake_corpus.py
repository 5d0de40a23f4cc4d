"""Real samples written by others, each through the real HTTP route, signed as its sender signs.

The corpus is `tests/data/{fhir,calcom,calendly}/`: every file's first line names where it
comes from (repository, path, commit, licence); the rest is the message exactly as
published, sent as the body. The answers below are what the service must say to each.
The samples are historical (their starts are years past) and name people the directory
does not hold, so most bookings are refused with the reason; a few runs below change only
what a real sender would have (the start, a phone answer, a directory entry) to show the
same message is then applied.

A no-show for a session the service never heard of is refused 404 (issue 23 item 6), in
every format.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.application import Application
from missed_session.intake.signatures import sign_calcom, sign_calendly
from tests.support.intake_stack import CALCOM_SECRET, CALENDLY_KEY, Stack, running_stack

DATA = Path(__file__).parent / "data"
UNKNOWN_NO_SHOW = ((404, "not_found"),)
"""A no-show for a session never booked (see the module docstring)."""

Expected = tuple[tuple[tuple[int, str], ...], str]
"""The accepted (status, outcome) pairs and a text the answer must contain."""

CALCOM: dict[str, Expected] = {
    "booking_created": (((422, "bad_input"),), "already past its grace period"),
    "booking_rescheduled": (((422, "bad_input"),), "already past its grace period"),
    "booking_cancelled": (((200, "recorded"),), "cancelled before its booking arrived"),
    "booking_requested": (((200, "recorded"),), "awaiting confirmation"),
    "booking_paid": (((200, "recorded"),), "payment completed"),
    "instant_meeting": (((200, "recorded"),), "not used by this service"),
    "ooo_created": (((200, "recorded"),), "not used by this service"),
    "form_submitted": (((200, "recorded"),), "not used by this service"),
    "delegation_credential_error": (((200, "recorded"),), "not used by this service"),
    "wrong_assignment_report": (((200, "recorded"),), "not used by this service"),
    "meeting_started": (((200, "recorded"),), "meeting started"),
    "booking_no_show_updated_unmarked": (((404, "not_found"),), "no session"),
    "booking_no_show_updated_unmarked_2": (((404, "not_found"),), "no session"),
    "booking_no_show_updated_marked": (UNKNOWN_NO_SHOW, ""),
    "after_guests_cal_video_no_show_2": (UNKNOWN_NO_SHOW, ""),
    "after_hosts_cal_video_no_show": (((404, "not_found"),), "no session"),
    "after_hosts_cal_video_no_show_2": (((404, "not_found"),), "no session"),
    "recording_ready": (((400, "malformed"),), "not JSON"),
}

CALENDLY: dict[str, Expected] = {
    "invitee_created": (((422, "bad_input"),), "already past its grace period"),
    "invitee_canceled": (((200, "recorded"),), "cancelled before its booking arrived"),
    "invitee_no_show_created": (UNKNOWN_NO_SHOW, ""),
    "invitee_no_show_deleted": (((404, "not_found"),), "no session"),
    "routing_form_submission_created": (((200, "recorded"),), "not used by this service"),
    "event_type_created_adhoc": (((200, "recorded"),), "not used by this service"),
}

FHIR_APPOINTMENTS: dict[str, tuple[int, str, str]] = {
    "r4_appointment_example": (422, "invalid", "the Patient is not contained"),
    "stu3_appointment_example": (400, "structure", "Appointment.serviceCategory"),
    "cerner_r4_appointment": (422, "invalid", "no Practitioner participant"),
    "cerner_r4_appointment_create": (422, "invalid", "Appointment.id"),
}

FHIR_NOTIFICATIONS: dict[str, tuple[int, str]] = {
    "r4_notification_handshake": (200, "handshake received"),
    "r4_notification_heartbeat": (200, "heartbeat received"),
    "r4_notification_error": (200, "query-status received"),
    "r4_notification_empty": (422, "focus: missing"),
    "r4_notification_id_only": (422, "an Encounter, not an Appointment"),
    "r4_notification_full_resource": (422, "not an Appointment"),
    "r4_notification_multi_resource": (422, "not an Appointment"),
    "r4b_notification_handshake": (200, "handshake received"),
    "r4b_notification_id_only": (422, "an Encounter, not an Appointment"),
}


def sample(kind: str, name: str) -> bytes:
    """The sample's body: the file without its source line, byte for byte."""
    text = (DATA / kind / f"{name}.json").read_bytes()
    source, _, body = text.partition(b"\n")
    assert source.startswith(b"# source: ")
    assert b"licence" in source
    return body


def test_every_sample_has_an_expected_answer() -> None:
    for kind, table in (("calcom", CALCOM), ("calendly", CALENDLY)):
        assert {p.stem for p in (DATA / kind).glob("*.json")} == set(table), kind
    assert {p.stem for p in (DATA / "fhir").glob("*.json")} == set(FHIR_APPOINTMENTS) | set(
        FHIR_NOTIFICATIONS)


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue) as running:
        yield running


async def calcom(stack: Stack, body: bytes) -> tuple[int, dict[str, Any]]:
    status, text = await stack.post("/webhooks/calcom", body, **{
        "Content-Type": "application/json",
        "X-Cal-Signature-256": sign_calcom(CALCOM_SECRET, body)})
    return status, json.loads(text)


async def calendly(stack: Stack, body: bytes) -> tuple[int, dict[str, Any]]:
    status, text = await stack.post("/webhooks/calendly", body, **{
        "Content-Type": "application/json",
        "Calendly-Webhook-Signature": sign_calendly(CALENDLY_KEY, body, datetime.now(UTC))})
    return status, json.loads(text)


async def fhir(stack: Stack, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    status, text = await stack.post(path, body, **{"Content-Type": "application/fhir+json"})
    return status, json.loads(text)


@pytest.mark.parametrize("name", sorted(CALCOM))
async def test_calcom_sample(stack: Stack, name: str) -> None:
    accepted, text = CALCOM[name]
    status, answer = await calcom(stack, sample("calcom", name))
    assert (status, answer["outcome"]) in accepted, answer
    assert text in answer["message"], answer
    assert await calcom(stack, sample("calcom", name)) == (status, answer)  # a retry


@pytest.mark.parametrize("name", sorted(CALENDLY))
async def test_calendly_sample(stack: Stack, name: str) -> None:
    accepted, text = CALENDLY[name]
    status, answer = await calendly(stack, sample("calendly", name))
    assert (status, answer["outcome"]) in accepted, answer
    assert text in answer["message"], answer


@pytest.mark.parametrize("name", sorted(FHIR_APPOINTMENTS))
async def test_fhir_appointment_sample(stack: Stack, name: str) -> None:
    code, issue_code, text = FHIR_APPOINTMENTS[name]
    status, answer = await fhir(stack, "/fhir/Appointment", sample("fhir", name))
    assert status == code, answer
    issue = answer["issue"][0]
    assert (issue["severity"], issue["code"]) == ("error", issue_code), answer
    assert text in issue["diagnostics"], answer


@pytest.mark.parametrize("name", sorted(FHIR_NOTIFICATIONS))
async def test_fhir_notification_sample(stack: Stack, name: str) -> None:
    code, text = FHIR_NOTIFICATIONS[name]
    status, answer = await fhir(stack, "/fhir/subscription-notification", sample("fhir", name))
    assert status == code, answer
    assert any(text in issue["diagnostics"] for issue in answer["issue"]), answer


# -- the same messages, as a practice's own sender would fill them --------------------------


def redated(body: bytes, start: datetime, *replacements: tuple[str, str]) -> bytes:
    """The sample with every start/end moved to `start` (+15 or +60 min), ids made unique."""
    text = body.decode()
    stamp = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (start + timedelta(minutes=50)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = re.sub(r'("(?:startTime|start_time|start)":\s*")[^"]+"', rf'\g<1>{stamp}"', text)
    text = re.sub(r'("(?:endTime|end_time|end)":\s*")[^"]+"', rf'\g<1>{later}"', text)
    for old, new in replacements:
        text = text.replace(old, new)
    return text.encode()


async def test_calcom_booking_created_as_a_practice_sends_it(stack: Stack) -> None:
    uid = f"corpus-{datetime.now(UTC).timestamp():.0f}"
    body = redated(sample("calcom", "booking_created"), stack.start,
                   ('"unique-booking-id"', f'"{uid}"'),
                   ('"label": "phone_number",',
                    '"label": "phone_number", "value": "+14155550142",'))
    status, answer = await calcom(stack, body)
    assert (status, answer["outcome"]) == (201, "applied"), answer
    host = sample("calcom", "after_hosts_cal_video_no_show").replace(
        b'"abc123-def456-ghi789"', f'"{uid}"'.encode())
    status, answer = await calcom(stack, host)
    assert (status, answer["outcome"]) == (200, "applied"), answer
    assert "cancelled before any client outreach" in answer["message"]


async def test_calendly_invitee_created_as_a_practice_sends_it(stack: Stack) -> None:
    invitee = f"CORPUS{datetime.now(UTC).timestamp():.0f}"
    body = redated(sample("calendly", "invitee_created"), stack.start,
                   ("invitees/AAAAAAAAAAAAAAAA", f"invitees/{invitee}"),
                   ('"text_reminder_number": null', '"text_reminder_number": "+1 404-555-1234"'))
    status, answer = await calendly(stack, body)
    assert (status, answer["outcome"]) == (201, "applied"), answer
    no_show = sample("calendly", "invitee_no_show_created").replace(
        b"invitees/AAAAAAAAAAAAAAAA", f"invitees/{invitee}".encode())
    status, answer = await calendly(stack, no_show)
    assert (status, answer["outcome"]) == (200, "recorded"), answer


async def test_the_r4_example_for_a_patient_the_directory_holds(stack: Stack) -> None:
    application = stack.intake.intake._app  # the stack's application layer
    assert isinstance(application, Application)
    clients = await application.clients()
    added = await clients.add({"ref": "example", "first_name": "Peter",
                               "time_zone": "Australia/Melbourne",
                               "phones": [{"number": "+61355556473", "use": "mobile"}]},
                              recorded_by="t-ana")
    assert added.ok, added.message
    session = f"corpus{datetime.now(UTC).timestamp():.0f}"
    body = redated(sample("fhir", "r4_appointment_example"), stack.start,
                   ('"id": "example"', f'"id": "{session}"'))
    status, answer = await fhir(stack, "/fhir/Appointment", body)
    assert status == 201, answer
