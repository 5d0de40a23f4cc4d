"""FHIR R4 Appointment and Subscription notifications through a real HTTP server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from aiohttp import web
from temporalio.testing import WorkflowEnvironment

from missed_session.domain.models import AuditEventType
from tests.support import intake_samples as samples
from tests.support.intake_stack import Stack, new_id, running_stack

TOKEN = "Bearer fhir-test-token"


@pytest.fixture
async def fhir_server() -> AsyncIterator[tuple[str, dict[str, dict[str, object]]]]:
    """The sender's FHIR server, for id-only notifications: serves what the test puts in."""
    resources: dict[str, dict[str, object]] = {}

    async def read(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != TOKEN:
            return web.Response(status=401)
        if request.match_info["id"] == "broken":
            return web.Response(status=500)
        found = resources.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404)
        return web.json_response(found, content_type="application/fhir+json")

    app = web.Application()
    app.router.add_get("/fhir/Appointment/{id}", read)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/fhir", resources
    await runner.cleanup()


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
                fhir_server: tuple[str, dict[str, object]]) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue,
                             fhir_base_url=fhir_server[0],
                             fhir_authorization=TOKEN) as running:
        yield running


async def post(stack: Stack, resource: dict[str, object],
               path: str = "/fhir/Appointment") -> tuple[int, dict[str, object]]:
    status, text = await stack.post(path, json.dumps(resource),
                                    **{"Content-Type": "application/fhir+json"})
    document = json.loads(text)
    assert document["resourceType"] == "OperationOutcome"
    return status, document


def diagnostics(document: dict[str, object]) -> str:
    issues = document["issue"]
    assert isinstance(issues, list)
    return " | ".join(str(issue["diagnostics"]) for issue in issues)


async def test_booked_starts_once(stack: Stack) -> None:
    session = new_id()
    resource = samples.fhir_appointment(session, "booked", stack.start, version="1")
    status, document = await post(stack, resource)
    assert status == 201, document
    assert await stack.exists(session)
    again = await post(stack, resource)
    assert again == (status, document)
    moved = samples.fhir_appointment(session, "booked", stack.start + timedelta(hours=1),
                                     version="2")
    status, document = await post(stack, moved)
    assert status == 200, document
    assert "moved to" in diagnostics(document)
    found = await stack.wait_for(session, AuditEventType.RESCHEDULED)
    assert found.count(AuditEventType.SCHEDULED) == 1


@pytest.mark.parametrize(("status", "events"), [
    ("arrived", [AuditEventType.CHECKED_IN]),
    ("checked-in", [AuditEventType.CHECKED_IN]),
    ("fulfilled", [AuditEventType.CHECKED_IN]),
    ("cancelled", [AuditEventType.CANCELLED]),
    ("entered-in-error", [AuditEventType.CANCELLED]),
])
async def test_each_status_after_booking(stack: Stack, status: str,
                                         events: list[AuditEventType]) -> None:
    session = new_id()
    booked = samples.fhir_appointment(session, "booked", stack.start, version="1")
    assert (await post(stack, booked))[0] == 201
    changed = samples.fhir_appointment(session, status, stack.start, version="2")
    code, document = await post(stack, changed)
    assert code == 200, document
    found = await stack.wait_for(session, AuditEventType.CLOSED)
    for event in events:
        assert event in found


@pytest.mark.parametrize("status", ["proposed", "pending", "waitlist"])
async def test_tentative_statuses_start_nothing(stack: Stack, status: str) -> None:
    session = new_id()
    code, document = await post(stack, samples.fhir_appointment(session, status, stack.start))
    assert code == 200
    assert "nothing is started" in diagnostics(document)
    assert not await stack.exists(session)


async def test_noshow_is_recorded(stack: Stack) -> None:
    session = new_id()
    assert (await post(stack, samples.fhir_appointment(session, "booked", stack.start)))[0] \
        == 201
    code, document = await post(stack, samples.fhir_appointment(session, "noshow",
                                                                stack.start, version="2"))
    assert code == 200
    assert "no-show is recorded" in diagnostics(document)


@pytest.mark.parametrize(("change", "code", "text"), [
    ({"status": "bogus"}, 422, "unknown status"),
    ({"contained": None}, 422, "the Patient is not contained"),
    ({"start": "2030-01-01T10:00:00"}, 400, "Appointment.start"),
])
async def test_bad_appointments_start_nothing(stack: Stack, change: dict[str, object],
                                              code: int, text: str) -> None:
    session = new_id()
    resource = {**samples.fhir_appointment(session, "booked", stack.start,
                                           contained="contained" not in change), **change}
    resource = {key: value for key, value in resource.items() if value is not None}
    status, document = await post(stack, resource)
    assert status == code, document
    assert text in diagnostics(document)
    assert document["issue"][0]["severity"] == "error"  # type: ignore[index]
    assert not await stack.exists(session)


async def test_cancel_before_booking(stack: Stack) -> None:
    session = new_id()
    code, document = await post(stack, samples.fhir_appointment(session, "cancelled",
                                                                stack.start, version="1"))
    assert code == 200
    assert "cancelled before its booking" in diagnostics(document)
    code, document = await post(stack, samples.fhir_appointment(session, "booked",
                                                                stack.start, version="2"))
    assert code == 200
    assert "not started" in diagnostics(document)
    assert not await stack.exists(session)


async def test_handshake_and_heartbeat(stack: Stack) -> None:
    for kind in ("handshake", "heartbeat"):
        code, document = await post(
            stack, samples.r4b_notification("Subscription/s1", 0, None, kind=kind),
            "/fhir/subscription-notification")
        assert code == 200
        assert kind in diagnostics(document)


async def test_full_resource_notification_applies_once(stack: Stack) -> None:
    session = new_id()
    subscription = f"https://ehr.example/fhir/Subscription/{new_id()}"
    appointment = samples.fhir_appointment(session, "booked", stack.start)
    bundle = samples.r4_notification(subscription, 1, appointment,
                                     f"https://ehr.example/fhir/Appointment/{session}")
    first = await post(stack, bundle, "/fhir/subscription-notification")
    assert first[0] == 200
    assert "scheduled session" in diagnostics(first[1])
    again = await post(stack, bundle, "/fhir/subscription-notification")
    assert again == first
    assert await stack.wait_for(session, AuditEventType.SCHEDULED) == [
        AuditEventType.SCHEDULED]


async def test_id_only_notification_fetches_from_the_sender(
        stack: Stack, fhir_server: tuple[str, dict[str, object]]) -> None:
    base, resources = fhir_server
    session = new_id()
    resources[session] = samples.fhir_appointment(session, "booked", stack.start)
    subscription = f"Subscription/{new_id()}"
    bundle = samples.r4b_notification(subscription, 3, f"Appointment/{session}")
    code, document = await post(stack, bundle, "/fhir/subscription-notification")
    assert code == 200, document
    assert await stack.exists(session)
    outside = samples.r4b_notification(subscription, 4, "https://elsewhere.example/x")
    code, document = await post(stack, outside, "/fhir/subscription-notification")
    assert code == 422  # never 200 for an event that was not processed
    assert "not under the configured FHIR base" in diagnostics(document)
    broken = samples.r4b_notification(subscription, 5, "Appointment/broken")
    code, document = await post(stack, broken, "/fhir/subscription-notification")
    assert code == 503
    assert document["issue"][0]["code"] == "transient"  # type: ignore[index]
    assert base
