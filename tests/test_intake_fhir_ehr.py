"""FHIR as EHRs send it, through the HTTP API to a real worker and a local EHR.

The local EHR (aiohttp) is a FHIR server that admits only SMART Backend Services clients:
its token endpoint checks the RFC 7523 client assertion (signature with the registered
public key, iss = sub = client id, aud = the token endpoint, a short expiry, a fresh jti)
and every read needs a token it issued.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
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
from missed_session.intake.web import sign_hub
from missed_session.store.clients import ClientDirectory
from tests.support import intake_samples as samples
from tests.support.factories import daytime
from tests.support.intake_stack import close_sessions, new_id
from tests.support.servers import TEST_KEYS
from worker import new_worker

CLIENT_ID = "msr-backend"
KEY_ID = "msr-key-1"
SUBSCRIPTION = "Subscription/ehr-sub-1"
HUB_SECRET = "hub-secret-for-ehr-sub-1"


@dataclass
class Ehr:
    """What the local EHR holds and saw."""

    base: str = ""
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[str, dict[str, Any]] = field(default_factory=dict)
    related: dict[str, dict[str, Any]] = field(default_factory=dict)
    issued: set[str] = field(default_factory=set)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    broken: bool = False


@pytest.fixture
async def ehr() -> AsyncIterator[tuple[Ehr, str]]:
    """The EHR's FHIR server and the private key registered with it (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    state = Ehr()
    seen_jti: set[str] = set()

    async def configuration(_: web.Request) -> web.Response:
        return web.json_response({"token_endpoint": f"{state.base}/auth/token",
                                  "grant_types_supported": ["client_credentials"]})

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if (form.get("grant_type") != "client_credentials" or form.get(
                "client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:"
                                            "jwt-bearer"):
            return web.json_response({"error": "invalid_request"}, status=400)
        assertion = str(form.get("client_assertion"))
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, key.public_key(), algorithms=["RS384"],
                                audience=f"{state.base}/auth/token",
                                options={"require": ["exp", "jti", "iss", "sub", "aud"]})
        except jwt.PyJWTError:
            return web.json_response({"error": "invalid_client"}, status=401)
        if (header.get("kid") != KEY_ID or claims["iss"] != CLIENT_ID
                or claims["sub"] != CLIENT_ID or claims["exp"] > time.time() + 300
                or claims["jti"] in seen_jti):
            return web.json_response({"error": "invalid_client"}, status=401)
        seen_jti.add(claims["jti"])
        state.assertions.append(claims)
        issued = f"tok-{len(state.issued)}"
        state.issued.add(issued)
        return web.json_response({"access_token": issued, "token_type": "bearer",
                                  "expires_in": 300, "scope": form.get("scope")})

    def authorised(request: web.Request) -> bool:
        return request.headers.get("Authorization", "").removeprefix("Bearer ") in state.issued

    def bundle(resources: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"resourceType": "Bundle", "type": "searchset",
                                  "entry": [{"resource": r, "search": {"mode": "match"}}
                                            for r in resources]},
                                 content_type="application/fhir+json")

    async def read(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.Response(status=401)
        if state.broken:
            return web.Response(status=503)
        state.reads.append(request.path_qs)
        held = {"Patient": state.patients, "RelatedPerson": state.related}.get(
            request.match_info["kind"], {})
        found = held.get(request.match_info["id"])
        return (web.json_response(found, content_type="application/fhir+json") if found
                else web.Response(status=404))

    async def search(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.Response(status=401)
        state.reads.append(request.path_qs)
        kind = request.match_info["kind"]
        if kind == "RelatedPerson":
            return bundle([])
        wanted = request.query.get("identifier", "")
        pool = state.patients if kind == "Patient" else state.appointments
        return bundle([r for r in pool.values() for i in r.get("identifier", [])
                       if f"{i.get('system', '')}|{i['value']}" == wanted])

    app = web.Application()
    app.router.add_get("/fhir/.well-known/smart-configuration", configuration)
    app.router.add_post("/auth/token", token)
    app.router.add_get("/fhir/{kind}/{id}", read)
    app.router.add_get("/fhir/{kind}", search)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state, pem
    await runner.cleanup()


@dataclass
class Api:
    url: str
    scheduler: dict[str, str]
    application: Application
    start: datetime


@pytest.fixture
async def api(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
              ehr: tuple[Ehr, str]) -> AsyncIterator[Api]:
    state, pem = ehr
    client = time_skipping_env.client
    token = new_token()
    api_settings = ApiSettings(tokens={Scope.SCHEDULER: [digest(token)]})
    intake_settings = IntakeSettings.model_validate({
        "time_zone": "America/Los_Angeles", "country_code": "1",
        "fhir_base_url": f"{state.base}/fhir", "fhir_client_id": CLIENT_ID,
        "fhir_private_key": pem, "fhir_key_id": KEY_ID,
        "fhir_subscription_secrets": {SUBSCRIPTION: HUB_SECRET}})
    start = daytime(max(datetime.now(UTC), await time_skipping_env.get_current_time())
                    + timedelta(days=1))
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(Settings(task_queue=task_queue, encryption_keys=TEST_KEYS),
                        client=client, pool=pool) as application:
        app = create_app(application, api_settings, deliver_kept_texts=False,
                         extra_routers=[standards_router(application, intake_settings)])
        async with ApiServer(app) as server:
            yield Api(server.url, {"Authorization": f"Bearer {token}"}, application, start)
        await close_sessions(client, pool)


def referencing(session: str, start: datetime, actor: dict[str, Any]) -> dict[str, Any]:
    """The specification's Appointment shape, its Patient named by `actor` only."""
    resource = samples.fhir_appointment(session, "booked", start, contained=False)
    resource["participant"][0]["actor"] = actor
    return resource


async def add_client(application: Application, ref: str, phone: str) -> None:
    clients = await application.clients()
    added = await clients.add({"ref": ref, "first_name": "Robin", "time_zone": "America/Denver",
                               "phones": [{"number": phone, "use": "mobile"}]},
                              recorded_by="t-ana")
    assert added.ok, added.message


async def booked_phone(application: Application, session: str) -> str:
    booking = await (await application.sessions()).booking(session)
    assert booking is not None
    assert booking.client.phone is not None
    return booking.client.phone


async def test_a_patient_the_directory_holds_by_id_or_identifier(api: Api) -> None:
    await add_client(api.application, "pat-77", "+14155550177")
    by_reference, by_identifier = new_id(), new_id()
    async with httpx.AsyncClient(base_url=api.url, headers=api.scheduler, timeout=30) as http:
        answer = await http.post("/fhir/Appointment", content=json.dumps(referencing(
            by_reference, api.start, {"reference": "Patient/pat-77"})))
        assert answer.status_code == 201, answer.text
        answer = await http.post("/fhir/Appointment", content=json.dumps(referencing(
            by_identifier, api.start,
            {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "pat-77"}})))
        assert answer.status_code == 201, answer.text
    assert await booked_phone(api.application, by_reference) == "+14155550177"
    assert await booked_phone(api.application, by_identifier) == "+14155550177"


async def test_an_unknown_patient_is_read_from_the_ehr_with_a_backend_token(
        api: Api, ehr: tuple[Ehr, str], pool: asyncpg.Pool) -> None:
    state, _ = ehr
    state.patients["ehr-5"] = {
        "resourceType": "Patient", "id": "ehr-5",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-5"}],
        "name": [{"given": ["Jordan"], "family": "Reyes"}],
        "telecom": [{"system": "phone", "value": "+14155550155", "use": "mobile"}],
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/tz-code",
                       "valueCode": "America/Chicago"}]}
    first, second = new_id(), new_id()
    async with httpx.AsyncClient(base_url=api.url, headers=api.scheduler, timeout=30) as http:
        answer = await http.post("/fhir/Appointment", content=json.dumps(referencing(
            first, api.start, {"reference": "Patient/ehr-5"})))
        assert answer.status_code == 201, answer.text
        # the next Appointment names the same Patient by identifier: found by its link
        answer = await http.post("/fhir/Appointment", content=json.dumps(referencing(
            second, api.start, {"identifier": {"system": "urn:oid:1.2.36.146.595.217.0.1",
                                               "value": "MRN-5"}, "type": "Patient"})))
        assert answer.status_code == 201, answer.text
    assert len(state.assertions) == 1  # one token, kept for the second request
    assert [read for read in state.reads if read.startswith("/fhir/Patient")] == [
        "/fhir/Patient/ehr-5"]
    imported = await ClientDirectory(pool).get("MRN-5")
    assert imported is not None
    assert imported.first_name == "Jordan"
    assert await booked_phone(api.application, first) == "+14155550155"
    assert await booked_phone(api.application, second) == "+14155550155"


async def test_an_appointment_naming_only_a_related_person(
        api: Api, ehr: tuple[Ehr, str]) -> None:
    state, _ = ehr
    state.related["rp-1"] = {"resourceType": "RelatedPerson", "id": "rp-1",
                             "patient": {"reference": "Patient/ehr-7"},
                             "name": [{"given": ["Alex"], "family": "Reyes"}],
                             "telecom": [{"system": "phone", "value": "+14155550166"}]}
    state.patients["ehr-7"] = {
        "resourceType": "Patient", "id": "ehr-7", "name": [{"given": ["Casey"]}],
        "telecom": [{"system": "sms", "value": "+14155550177", "use": "mobile"}]}
    session = new_id()
    async with httpx.AsyncClient(base_url=api.url, headers=api.scheduler, timeout=30) as http:
        answer = await http.post("/fhir/Appointment", content=json.dumps(referencing(
            session, api.start, {"reference": "RelatedPerson/rp-1"})))
        assert answer.status_code == 201, answer.text
    assert await booked_phone(api.application, session) == "+14155550177"


async def test_a_patient_the_ehr_cannot_give_now_is_sent_again(
        api: Api, ehr: tuple[Ehr, str]) -> None:
    state, _ = ehr
    state.broken = True
    session = new_id()
    async with httpx.AsyncClient(base_url=api.url, headers=api.scheduler, timeout=30) as http:
        answer = await http.post("/fhir/Appointment", content=json.dumps(referencing(
            session, api.start, {"reference": "Patient/ehr-9"})))
        assert answer.status_code == 503, answer.text
        assert answer.json()["issue"][0]["code"] == "transient"
        state.broken = False
        answer = await http.post("/fhir/Appointment", content=json.dumps(referencing(
            session, api.start, {"reference": "Patient/ehr-9"})))
        assert answer.status_code == 422, answer.text  # the EHR has no such Patient
        assert "404" in answer.text


async def test_rest_hook_notifications_are_authenticated_by_their_signature(
        api: Api, ehr: tuple[Ehr, str]) -> None:
    state, _ = ehr
    session = new_id()
    appointment = samples.fhir_appointment(session, "booked", api.start)
    appointment["identifier"] = [{"system": "urn:appt", "value": f"A-{session}"}]
    state.appointments[session] = appointment
    bundle = samples.r4b_notification(SUBSCRIPTION, 1, "Appointment/placeholder")
    status = bundle["entry"][0]["resource"]
    status["notificationEvent"][0]["focus"] = {
        "identifier": {"system": "urn:appt", "value": f"A-{session}"}}
    body = json.dumps(bundle).encode()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        unsigned = await http.post("/fhir/subscription-notification", content=body)
        assert unsigned.status_code == 401
        forged = await http.post("/fhir/subscription-notification", content=body,
                                 headers={"X-Hub-Signature": sign_hub("wrong", body)})
        assert forged.status_code == 401
        assert "does not match" in forged.text
        signed = await http.post("/fhir/subscription-notification", content=body,
                                 headers={"X-Hub-Signature": sign_hub(HUB_SECRET, body)})
        assert signed.status_code == 200, signed.text
    assert await (await api.application.sessions()).booking(session) is not None
