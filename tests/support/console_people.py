"""The people pages' fixtures (tests/test_console_people.py, tests/test_conformance.py).

Three clinicians signed in over ASGI, a client with consent and three past sessions, and a
session of another client today; the shared roster and accounts: `tests.support.console`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from missed_session.application import console as cases
from missed_session.application.clients import ClientUseCases
from missed_session.application.service import Application
from missed_session.console.routes import console_router
from missed_session.domain import events
from missed_session.domain.clients import ConsentEntry, ConsentSource, ConsentSubject
from missed_session.domain.models import ConsentScope, Modality, Outcome, RiskTier
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.clients import ClientDirectory
from tests.support.console import PASSWORD, console_application, roster

ROSTER = roster("t-ana", "t-bo", "s-maya")
"""Two therapists and their clinical supervisor."""

NOW = datetime.now(UTC).replace(microsecond=0)


async def trail(pool: asyncpg.Pool, session_id: str, *, client_ref: str, therapist: str,
                start: datetime, outcome: Outcome | None) -> None:
    """A session's trail as the workflow writes it: booked, (no-show, a call), closed."""
    store = AuditStore(pool)
    details: list[events.EventDetails] = [events.Scheduled(
        client_ref=client_ref, therapist_id=therapist, start=start, duration_minutes=50,
        modality=Modality.IN_PERSON, risk_tier=RiskTier.HIGH, grace_period_minutes=10)]
    if outcome is not None and outcome.is_no_show:
        details += [events.GracePeriodExpired(grace_period_minutes=10),
                    events.OutreachAttempted(attempt=1, result="no_answer")]
    at = start
    for n, detail in enumerate(details, 1):
        at = start + timedelta(minutes=10, seconds=30 * (n - 1)) if n > 1 else start
        await store.record([events.new_event(session_id=session_id, sequence=n,
                                            occurred_at=at, details=detail)])
    if outcome is not None:
        closing = events.new_event(session_id=session_id, sequence=len(details) + 1,
                                   occurred_at=at + timedelta(minutes=5),
                                   details=events.Closed(outcome=outcome, attempts=1))
        await store.record([closing], attendance=Attendance(
            client_ref=client_ref, therapist_id=therapist, start=start, outcome=outcome))


@pytest.fixture
async def app(pool: asyncpg.Pool) -> Application:
    application = await console_application(pool, ROSTER, "t-ana", "t-bo", "s-maya")
    added = await ClientUseCases(pool).add({
        "ref": "c-robin", "first_name": "Robin", "time_zone": "America/New_York",
        "phones": [{"number": "+14155550177", "use": "mobile"}],
        "emergency_contacts": [{"name": "Lee", "phone": "+14155550188",
                                "relationship": "sister"}]}, recorded_by="t-ana")
    assert added.ok, added.message
    await ClientDirectory(pool).append_consent(ConsentEntry(
        client_ref="c-robin", subject=ConsentSubject.EMERGENCY_CONTACT,
        scope=ConsentScope.SAFETY_CONCERN, granted=True,
        effective_at=datetime(2026, 1, 15, tzinfo=UTC), source=ConsentSource.INTAKE_FORM,
        recorded_by="t-ana"))
    for weeks, outcome in ((3, Outcome.ATTENDED), (2, Outcome.UNREACHABLE_ESCALATION_BLOCKED),
                           (1, Outcome.REACHED)):
        await trail(pool, f"s-robin-{weeks}", client_ref="c-robin", therapist="t-ana",
                    start=NOW - timedelta(weeks=weeks), outcome=outcome)
    await trail(pool, "s-sky-today", client_ref="c-sky", therapist="t-bo",
                start=NOW + timedelta(minutes=1), outcome=None)
    return application


@pytest.fixture
async def browsers(app: Application) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    api = FastAPI()
    api.include_router(console_router(app, secure_cookies=False))
    transport = httpx.ASGITransport(app=api)
    clients = {}
    for who in ("t-ana", "t-bo", "s-maya"):
        signed = await cases.sign_in(app, who, PASSWORD, NOW)
        assert isinstance(signed, cases.SignIn)
        clients[who] = httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                         cookies={"msr_console": signed.token})
    yield clients
    for client in clients.values():
        await client.aclose()

