"""A decision through the HTTP API is always the authenticated clinician's (issue 24, item 4).

A clinician's own token (or OIDC access token) names them; the body cannot name anyone
else; a shared clinician token reads but decides nothing; someone off the roster decides
nothing; the decision carries how its clinician was authenticated.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, TokenCheck, digest, new_token, token_id
from missed_session.application import console
from missed_session.domain import events
from missed_session.domain.models import (
    AuditEventType,
    ClinicianDecision,
    DecisionKind,
    workflow_id_for,
)
from tests.support.codec_auth import Provider, provider  # noqa: F401 (a fixture)
from tests.support.console import PASSWORD, ROSTER, load
from tests.support.http_api import Served, booked, served  # noqa: F401 (a fixture)
from tests.support.starter import recorded

NOW = datetime.now(UTC)


def test_a_clinician_token_names_its_clinician_and_its_id() -> None:
    shared, ana = new_token(), new_token()
    check = TokenCheck({Scope.CLINICIAN: [digest(shared)]}, {"t-ana": [digest(ana)]})
    mine = check.identify(ana)
    assert mine is not None
    assert (mine.scope, mine.clinician_id) == (Scope.CLINICIAN, "t-ana")
    assert mine.reference == f"api-token:{token_id(digest(ana))}"
    assert ana not in mine.reference
    assert len(token_id(digest(ana))) == 16
    anyone = check.identify(shared)
    assert anyone is not None
    assert anyone.clinician_id is None
    assert check.identify(new_token()) is None


def test_settings_refuse_a_token_given_twice_or_a_bad_clinician_id() -> None:
    value = digest(new_token())
    with pytest.raises(ValueError, match="also a scope token"):
        ApiSettings(tokens={Scope.CLINICIAN: [value]}, clinician_tokens={"t-ana": [value]})
    with pytest.raises(ValueError, match="two clinicians"):
        ApiSettings(clinician_tokens={"t-ana": [value], "oc-lee": [value]})
    with pytest.raises(ValueError, match="roster clinician id"):
        ApiSettings(clinician_tokens={"x' OR '1'='1": [value]})
    with pytest.raises(ValueError, match="not a token"):
        ApiSettings(clinician_tokens={"t-ana": [new_token()]})


async def decisions_in_history(served: Served, session_id: str) -> list[ClinicianDecision]:  # noqa: F811
    """The decisions the session's workflow accepted, as its history holds them."""
    client = await served.application.temporal()
    handle = client.get_workflow_handle(workflow_id_for(session_id))
    found: list[ClinicianDecision] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes \
                .accepted_request
            if request.input.name == "add_note":
                [decision] = await client.data_converter.decode(
                    request.input.args.payloads, [ClinicianDecision])
                found.append(decision)
    return found


async def test_a_decision_is_the_authenticated_clinicians(
    served: Served, pool: asyncpg.Pool,  # noqa: F811
    time_skipping_env: WorkflowEnvironment,
) -> None:
    await load(pool, ROSTER)
    session_id = (await booked(served, time_skipping_env))["session_id"]
    note = f"/sessions/{session_id}/decisions/add_note"
    async with served.client(clinician="t-ana") as http:
        mine = await http.post(note, json={"reason": "spoke with the client's GP"})
        assert mine.status_code == 200, mine.text
        named = await http.post(note, json={"clinician_id": "t-ana", "reason": "again"})
        assert named.status_code == 200, named.text
        other = await http.post(note, json={"clinician_id": "oc-lee", "reason": "as lee"})
        assert other.status_code == 403, other.text
        assert other.json()["problems"][0]["path"] == "clinician_id"
        injected = await http.post(note, json={"clinician_id": "x' OR '1'='1",
                                               "reason": "as nobody"})
        assert injected.status_code == 403
        smuggled = await http.post(note, json={"reason": "r", "authenticated_by": "oidc:x"})
        assert smuggled.status_code == 422
        assert smuggled.json()["problems"][0]["path"] == "authenticated_by"
    async with served.client(Scope.CLINICIAN) as http:
        shared = await http.post(note, json={"clinician_id": "t-ana", "reason": "shared"})
        assert shared.status_code == 403
        assert "own token" in shared.json()["message"]
        assert (await http.get(f"/sessions/{session_id}")).status_code == 200
    async with served.client(clinician="t-gone") as http:
        gone = await http.post(note, json={"reason": "left the practice"})
        assert gone.status_code == 403
        assert "not on the roster" in gone.json()["message"]
    async with served.client(Scope.SCHEDULER) as http:
        assert (await http.post(note, json={"reason": "r"})).status_code == 403

    # The console: the decision is the signed-in clinician's, with their sign-in named.
    assert (await console.set_password(served.application, "t-ana", PASSWORD)).ok
    signed = await console.sign_in(served.application, "t-ana", PASSWORD, NOW)
    assert isinstance(signed, console.SignIn)
    who = await console.viewer(served.application, signed.token, NOW)
    assert who is not None
    assert (await console.decide(served.application, who, session_id, DecisionKind.ADD_NOTE,
                                 reason="from the console", legal_basis="")).ok

    ana = f"api-token:{token_id(digest(served.clinician_tokens['t-ana']))}"
    accepted = await decisions_in_history(served, session_id)
    assert [(d.clinician_id, d.reason, d.authenticated_by) for d in accepted] == [
        ("t-ana", "spoke with the client's GP", ana), ("t-ana", "again", ana),
        ("t-ana", "from the console",
         f"console-session:{console.session_ref(signed.token)}")]
    store = await served.application.store()
    await recorded(store, session_id, AuditEventType.CLINICIAN_DECISION)
    made = [events.read(event) for event in await store.trail(session_id)
            if event.event_type is AuditEventType.CLINICIAN_DECISION]
    assert [(d.clinician_id, d.reason) for d in made  # type: ignore[attr-defined]
            ][:1] == [("t-ana", "spoke with the client's GP")]


def test_a_decision_row_keeps_how_its_clinician_was_authenticated() -> None:
    with_auth = events.ClinicianDecisionMade(
        decision="add_note", clinician_id="t-ana", reason="r",
        authenticated_by="api-token:tok-0123456789ab")
    assert with_auth.to_data()["authenticated_by"] == "api-token:tok-0123456789ab"
    from_cli = events.ClinicianDecisionMade(decision="add_note", clinician_id="t-ana",
                                            reason="r")
    assert "authenticated_by" not in from_cli.to_data()  # the shape of older rows
    old_row = {"decision": "add_note", "clinician_id": "t-ana",
               "reason": "r", "legal_basis": None}
    assert events.ClinicianDecisionMade.model_validate(old_row).authenticated_by is None


async def test_an_oidc_access_token_decides_as_its_mapped_clinician(
    served: Served, pool: asyncpg.Pool, provider: Provider,  # noqa: F811
    time_skipping_env: WorkflowEnvironment,
) -> None:
    await load(pool, ROSTER)
    session_id = (await booked(served, time_skipping_env))["session_id"]
    settings = ApiSettings(oidc_issuer=provider.issuer, oidc_audience="msr-api",
                           oidc_subjects={"staff-17": "t-ana", "staff-99": "t-gone"})
    api = create_app(served.application, settings, deliver_kept_texts=False)
    note = f"/sessions/{session_id}/decisions/add_note"
    async with ApiServer(api) as server, httpx.AsyncClient(base_url=server.url) as http:
        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        mine = await http.post(note, json={"reason": "by OIDC"},
                               headers=bearer(provider.token(aud="msr-api")))
        assert mine.status_code == 200, mine.text
        other = await http.post(note, json={"clinician_id": "oc-lee", "reason": "r"},
                                headers=bearer(provider.token(aud="msr-api")))
        assert other.status_code == 403
        for refused in (provider.token(aud="msr-api", sub="staff-unknown"),
                        provider.token(),  # the codec server's audience, not the API's
                        provider.token(aud="msr-api", exp=int(time.time()) - 3600)):
            answer = await http.post(note, json={"reason": "r"}, headers=bearer(refused))
            assert answer.status_code == 401, answer.text
        gone = await http.post(note, json={"reason": "r"}, headers=bearer(
            provider.token(aud="msr-api", sub="staff-99")))
        assert gone.status_code == 403
        assert (await http.get(f"/sessions/{session_id}", headers=bearer(
            provider.token(aud="msr-api")))).status_code == 200
    [decision] = await decisions_in_history(served, session_id)
    assert (decision.clinician_id, decision.authenticated_by) == (
        "t-ana", f"oidc:staff-17@{provider.issuer}")


def test_oidc_settings_come_complete() -> None:
    with pytest.raises(ValueError, match="needs oidc_audience"):
        ApiSettings(oidc_issuer="https://login.example.org/realms/practice")
    with pytest.raises(ValueError, match="need oidc_issuer"):
        ApiSettings(oidc_subjects={"staff-17": "t-ana"})


async def test_the_trail_row_names_how_the_clinician_was_authenticated(
    served: Served, pool: asyncpg.Pool,  # noqa: F811
    time_skipping_env: WorkflowEnvironment,
) -> None:
    await load(pool, ROSTER)
    session_id = (await booked(served, time_skipping_env))["session_id"]
    async with served.client(clinician="t-ana") as http:
        answer = await http.post(f"/sessions/{session_id}/decisions/add_note",
                                 json={"reason": "spoke with the client's GP"})
        assert answer.status_code == 200, answer.text
    store = await served.application.store()
    await recorded(store, session_id, AuditEventType.CLINICIAN_DECISION)
    [row] = [event for event in await store.trail(session_id)
             if event.event_type is AuditEventType.CLINICIAN_DECISION]
    assert row.data["clinician_id"] == "t-ana"
    assert row.data["authenticated_by"] == (
        f"api-token:{token_id(digest(served.clinician_tokens['t-ana']))}")
