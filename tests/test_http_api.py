"""The HTTP API against a real uvicorn, the time-skipping server, a worker and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from temporalio.testing import WorkflowEnvironment

from missed_session.api.tokens import Scope
from missed_session.application import limits
from missed_session.domain.models import AuditEventType
from tests.support.factories import booking_data
from tests.support.http_api import Served, booked, served  # noqa: F401 (a fixture)
from tests.support.starter import recorded


async def test_booking_is_idempotent_and_a_different_one_is_409(
    served: Served, time_skipping_env: WorkflowEnvironment,  # noqa: F811
) -> None:
    data = await booked(served, time_skipping_env)
    session_id = data["session_id"]
    async with served.client() as http:
        again = await http.post("/sessions", json=data)
        assert again.status_code == 200
        assert again.json()["kind"] == "already_scheduled"

        changed = {**data, "risk_tier": "high",
                   "client": {**data["client"], "phone": "+14155550111"}}
        conflict = await http.post("/sessions", json=changed)
        assert conflict.status_code == 409
        body = conflict.json()
        assert body["kind"] == "refused"
        assert body["differing_fields"] == ["client.phone", "risk_tier"]
        assert "+14155550111" not in conflict.text

        status = await http.get(f"/sessions/{session_id}")
        assert status.status_code == 200
        assert status.json()["status"] == "scheduled"

        past = await http.post(f"/sessions/{session_id}/reschedule",
                               json={"start": "2020-01-01T10:00:00+00:00"})
        assert past.status_code == 409
        assert "reschedule refused" in past.json()["message"]

        cancelled = await http.post(f"/sessions/{session_id}/cancel",
                                    json={"reason": "client moved away"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["kind"] == "applied"
    await recorded(await served.application.store(), session_id, AuditEventType.CLOSED)
    async with served.client(Scope.AUDITOR) as http:
        audit = await http.get(f"/sessions/{session_id}/audit")
    assert audit.status_code == 200
    assert [event["event_type"] for event in audit.json()["events"]] == [
        "scheduled", "cancelled", "closed"]
    assert "Robin" not in audit.text


async def test_check_in_then_closed_is_404(
    served: Served, time_skipping_env: WorkflowEnvironment,  # noqa: F811
) -> None:
    data = await booked(served, time_skipping_env)
    session_id = data["session_id"]
    async with served.client() as http:
        checked_in = await http.post(f"/sessions/{session_id}/check-in")
        assert checked_in.status_code == 200, checked_in.text
        await recorded(await served.application.store(), session_id, AuditEventType.CLOSED)
        late = await http.post(f"/sessions/{session_id}/check-in", json={})
    assert late.status_code == 404
    assert "already closed" in late.json()["message"]


async def test_bad_input_names_each_field_without_echoing_it(served: Served) -> None:  # noqa: F811
    data = booking_data()
    data["client"]["phone"] = "0123-4567"
    data["client"]["time_zone"] = "Mars/Base"
    del data["therapist_id"]
    async with served.client() as http:
        response = await http.post("/sessions", json=data)
        assert response.status_code == 422
        body = response.json()
        assert sorted(problem["path"] for problem in body["problems"]) == [
            "client.phone", "client.time_zone", "therapist_id"]
        assert "0123-4567" not in response.text
        bad_json = await http.post("/sessions", content=b"{", headers={
            "content-type": "application/json"})
        assert bad_json.status_code == 422
        bad_id = await http.post("/sessions/a%20b/cancel")
        assert bad_id.status_code == 422
        assert bad_id.json()["problems"][0]["path"] == "session_id"
        past_grace = await http.post("/sessions", json=booking_data(
            start="2020-01-01T10:00:00+00:00"))
        assert past_grace.status_code == 422
        assert past_grace.json()["problems"][0]["path"] == "start"
        unknown = await http.post("/sessions/s-nobody-here/cancel")
        assert unknown.status_code == 404
        assert unknown.json()["kind"] == "not_found"


async def test_tokens_and_scopes(served: Served) -> None:  # noqa: F811
    async with served.client(None) as http:
        missing = await http.get("/sessions/s-1")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await http.get("/sessions/s-1", headers={"Authorization": "Bearer msr_nope"})
        assert wrong.status_code == 401
    async with served.client(Scope.AUDITOR) as http:
        forbidden = await http.post("/sessions", json=booking_data())
        assert forbidden.status_code == 403
        assert forbidden.json()["kind"] == "forbidden"
    async with served.client(Scope.SCHEDULER) as http:
        no_audit = await http.get("/sessions/s-1/audit")
        assert no_audit.status_code == 403
        no_decision = await http.post("/sessions/s-1/decisions/mark_safe",
                                      json={"clinician_id": "t-ana", "reason": "seen"})
        assert no_decision.status_code == 403


async def test_request_size_limits(served: Served) -> None:  # noqa: F811
    async with served.client() as http:
        padded = json.dumps(booking_data()) + " " * limits.MAX_BOOKING_BYTES
        booking = await http.post("/sessions", content=padded.encode(),
                                  headers={"content-type": "application/json"})
        assert booking.status_code == 413
        huge = await http.post("/sessions/s-1/cancel", content=b" " * 2_000_000,
                               headers={"content-type": "application/json"})
        assert huge.status_code == 413
        assert huge.json()["kind"] == "too_large"

        async def chunks() -> Any:  # no content-length: counted as it arrives
            for _ in range(40):
                yield b" " * 50_000

        streamed = await http.post("/sessions/s-1/cancel", content=chunks(),
                                   headers={"content-type": "application/json"})
        assert streamed.status_code == 413


async def test_openapi_is_served(served: Served) -> None:  # noqa: F811
    async with served.client(None) as http:
        document = (await http.get("/openapi.json")).json()
    assert {"/sessions", "/sessions/{session_id}", "/sessions/{session_id}/audit",
            "/sessions/{session_id}/check-in", "/sessions/{session_id}/cancel",
            "/sessions/{session_id}/reschedule",
            "/sessions/{session_id}/responded"} <= set(document["paths"])
    assert "HTTPBearer" in document["components"]["securitySchemes"]


