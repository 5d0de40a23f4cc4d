"""The standards routes inside the HTTP API: scheduler tokens for FHIR and HL7, signatures
for the webhooks, one server for all."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from temporalio.testing import WorkflowEnvironment

from missed_session.api.tokens import Scope
from missed_session.intake.signatures import sign_calcom
from tests.support import intake_samples as samples
from tests.support.factories import daytime
from tests.support.intake_api import api  # noqa: F401 - fixtures, used by name
from tests.support.intake_stack import CALCOM_SECRET, new_id


async def test_fhir_and_hl7_need_a_scheduler_token_webhooks_a_signature(
        api: tuple[str, dict[Scope, str]], time_skipping_env: WorkflowEnvironment) -> None:  # noqa: F811
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
