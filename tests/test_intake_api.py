"""The standards routes inside the HTTP API: scheduler tokens for FHIR and HL7, signatures
for the webhooks, one server for all."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.config import Settings
from missed_session.intake.routes import standards_router
from missed_session.intake.settings import IntakeSettings
from missed_session.intake.signatures import sign_calcom
from tests import intake_samples as samples
from tests.conftest import TEST_KEYS
from tests.factories import daytime
from tests.intake_stack import CALCOM_SECRET, close_sessions, new_id
from worker import new_worker


@pytest.fixture
async def api(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
              ) -> AsyncIterator[tuple[str, dict[Scope, str]]]:
    client = time_skipping_env.client
    tokens = {scope: new_token() for scope in Scope}
    api_settings = ApiSettings(tokens={scope: [digest(token)] for scope, token in tokens.items()})
    intake_settings = IntakeSettings(time_zone="America/Los_Angeles", country_code="1",
                                     calcom_secret=CALCOM_SECRET)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(Settings(task_queue=task_queue, encryption_keys=TEST_KEYS),
                        client=client, pool=pool) as application:
        app = create_app(application, api_settings,
                         extra_routers=[standards_router(application, intake_settings)])
        async with ApiServer(app) as server:
            yield server.url, tokens
        await close_sessions(client, pool)


async def test_fhir_and_hl7_need_a_scheduler_token_webhooks_a_signature(
        api: tuple[str, dict[Scope, str]], time_skipping_env: WorkflowEnvironment) -> None:
    url, tokens = api
    start = daytime(max(datetime.now(UTC), await time_skipping_env.get_current_time())
                    + timedelta(days=1))
    session = new_id()
    body = json.dumps(samples.fhir_appointment(session, "booked", start))
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert (await http.post("/fhir/Appointment", content=body)).status_code == 401
        clinician = {"Authorization": f"Bearer {tokens[Scope.CLINICIAN]}"}
        assert (await http.post("/fhir/Appointment", content=body,
                                headers=clinician)).status_code == 403
        scheduler = {"Authorization": f"Bearer {tokens[Scope.SCHEDULER]}"}
        answer = await http.post("/fhir/Appointment", content=body, headers=scheduler)
        assert answer.status_code == 201, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+json")
        siu = samples.siu("S12", "API1", new_id(), start)
        assert (await http.post("/hl7", content=siu)).status_code == 401
        ack = await http.post("/hl7", content=siu, headers=scheduler)
        assert "MSA|AA|API1" in ack.text
        hook = samples.calcom("BOOKING_CREATED", new_id("u"), start)
        answer = await http.post("/webhooks/calcom", content=hook, headers={
            "X-Cal-Signature-256": sign_calcom(CALCOM_SECRET, hook)})
        assert answer.status_code == 201, answer.text
        schema = (await http.get("/openapi.json")).json()
        assert {"/fhir/Appointment", "/fhir/subscription-notification", "/hl7",
                "/webhooks/calcom", "/webhooks/calendly"} <= set(schema["paths"])
