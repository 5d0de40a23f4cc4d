"""Bad input is refused naming its field, never a 500 (issue 24, item 8).

Dates beyond the supported range (a start on 9999-12-31 used to overflow) and bodies nested
far too deep (Python's JSON parser recursing until RecursionError), on plain and on signed
routes.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from missed_session.api.app import create_app
from missed_session.api.errors import MAX_JSON_DEPTH, too_deep
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.channels import webhook
from missed_session.config import Settings
from missed_session.intake.signatures import sign_calcom
from tests.support import intake_samples as samples
from tests.support.factories import booking_data
from tests.support.http_api import Served, served  # noqa: F401 (a fixture)
from tests.support.intake_api import api  # noqa: F401 (a fixture)
from tests.support.intake_stack import CALCOM_SECRET, new_id
from tests.support.servers import TEST_KEYS

END_OF_TIME = "9999-12-31T23:59:59-05:00"
SECRET = "webhook-test-secret"


def test_depth_is_counted_outside_strings() -> None:
    assert too_deep(b"[" * 50_000 + b"]" * 50_000)
    assert too_deep(b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1))
    assert not too_deep(b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH)
    assert not too_deep(json.dumps({"note": "[{" * 500, "x": [[1], [2]]}).encode())
    assert not too_deep(json.dumps({"note": '\\"[[' * 500}).encode())


async def test_dates_beyond_the_supported_range_are_422_naming_the_field(
    served: Served,  # noqa: F811
) -> None:
    async with served.client() as http:
        for start in (END_OF_TIME, "9999-12-31T23:00:00+00:00", "0001-01-01T00:30:00+05:00"):
            booking = await http.post("/sessions", json=booking_data(start=start))
            assert booking.status_code == 422, booking.text
            assert booking.json()["problems"][0]["path"] == "start"
            assert start not in booking.text
        moved = await http.post("/sessions/s-1/reschedule", json={"start": END_OF_TIME})
        assert moved.status_code == 422, moved.text
        assert moved.json()["problems"][0]["path"] == "start"
        late = await http.post("/sessions/s-1/check-in", json={"at": END_OF_TIME})
        assert late.status_code == 422, late.text
        assert late.json()["problems"][0]["path"] == "at"
        overflowing = await http.post("/sessions", json=booking_data(
            start="9999-12-31T23:59:59.999999-14:00"))
        assert overflowing.status_code == 422


@pytest.fixture
async def signed_api() -> AsyncIterator[tuple[str, str]]:
    """An API with the webhook channel's secret and nothing behind it: nothing should
    get past the refusal to need Temporal or PostgreSQL."""
    token = new_token()
    settings = Settings(encryption_keys=TEST_KEYS, webhook_secret=SECRET,
                        temporal_address="127.0.0.1:1", database_url="postgresql://x@127.0.0.1:1/x")
    async with Application(settings) as application:
        server = ApiServer(create_app(application, ApiSettings(
            tokens={Scope.SCHEDULER: [digest(token)]}), deliver_kept_texts=False))
        async with server:
            yield server.url, token


async def test_a_deeply_nested_body_is_422_also_when_signed(
    signed_api: tuple[str, str],
) -> None:
    url, token = signed_api
    deep = b'{"from": "+14155550123", "body": "hi", "id": "m-1", "x": ' + (
        b"[" * 50_000) + (b"]" * 50_000) + b"}"
    timestamp = str(int(time.time()))
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        signed = await http.post("/inbound/webhook", content=deep, headers={
            "content-type": "application/json", webhook.TIMESTAMP_HEADER: timestamp,
            webhook.SIGNATURE_HEADER: webhook.sign(SECRET.encode(), timestamp, deep)})
        assert signed.status_code == 422, signed.text
        assert signed.json()["problems"] == [
            {"path": "body", "message": f"nested more than {MAX_JSON_DEPTH} levels deep"}]
        booking = await http.post("/sessions", content=b"[" * 50_000, headers={
            "Authorization": f"Bearer {token}", "content-type": "application/json"})
        assert booking.status_code == 422
        untyped = await http.post("/inbound/webhook", content=b"{" * 5_000)
        assert untyped.status_code == 422


async def test_standards_routes_refuse_dates_out_of_range(
    api: tuple[str, dict[Scope, str]],  # noqa: F811
) -> None:
    url, tokens = api
    start = datetime(2026, 12, 20, 18, 0, tzinfo=UTC)
    iso = start.isoformat()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for raw in (END_OF_TIME, "9999-12-31T23:59:59.999999-14:00",
                    "0001-01-01T00:00:00+14:00"):
            appointment = samples.fhir_appointment(new_id(), "booked", start)
            appointment["start"] = raw
            fhir = await http.post("/fhir/Appointment", content=json.dumps(appointment),
                                   headers={"Authorization":
                                            f"Bearer {tokens[Scope.SCHEDULER]}"})
            assert 400 <= fhir.status_code < 500, (raw, fhir.status_code, fhir.text)
            for trigger in ("BOOKING_CREATED", "BOOKING_RESCHEDULED"):
                hook = samples.calcom(trigger, new_id("u"), start).replace(
                    iso.replace("+00:00", "Z").encode(), raw.encode())
                signed = await http.post("/webhooks/calcom", content=hook, headers={
                    "X-Cal-Signature-256": sign_calcom(CALCOM_SECRET, hook)})
                assert signed.status_code < 500, (raw, trigger, signed.text)
