"""The console's client and therapist views and the supervisor's measures (issue 26 items
4-5), through the console's routes over a real PostgreSQL (no Temporal: these pages read
the trail, the directory and the attendance records).

A therapist finds their client by name and sees the client page (attendance chart, past
sessions and outcomes, consents, contacts); another therapist cannot find or open that
client, and the refusal is in the access log with the client's ref; "my sessions today"
lists a therapist's own sessions; the supervisor's measures page and CSV carry the figures;
a therapist is refused them. The median/p95 and the CSV are also checked directly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from missed_session.application import console as cases
from missed_session.application.clients import ClientUseCases
from missed_session.application.service import Application
from missed_session.config import Settings
from missed_session.console.routes import console_router
from missed_session.domain import events
from missed_session.domain.clients import ConsentEntry, ConsentSource, ConsentSubject
from missed_session.domain.models import ConsentScope, Modality, Outcome, RiskTier
from missed_session.domain.roster_file import parse_roster
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.clients import ClientDirectory
from missed_session.store.console import ConsoleStore
from missed_session.store.notices import RosterStore
from tests.conftest import TEST_KEYS

PASSWORD = "a long enough password"
ROSTER = """
[roster]
time_zone = "America/New_York"
accept_coverage_gaps = true
[roster.clinicians.t-ana]
role = "therapist"
sms = "+14155550101"
[roster.clinicians.t-bo]
role = "therapist"
sms = "+14155550103"
[roster.clinicians.s-maya]
role = "clinical_supervisor"
sms = "+14155550104"
"""
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
    loaded = parse_roster(ROSTER, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    application = Application(Settings(encryption_keys=TEST_KEYS), pool=pool)
    for clinician in ("t-ana", "t-bo", "s-maya"):
        assert (await cases.set_password(application, clinician, PASSWORD)).ok
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


async def test_a_therapist_finds_a_client_by_name_and_sees_their_attendance(
    browsers: dict[str, httpx.AsyncClient], pool: asyncpg.Pool,
) -> None:
    ana, bo = browsers["t-ana"], browsers["t-bo"]
    found = await ana.get("/console/find", params={"q": "rob"})
    assert found.status_code == 200
    assert 'href="/console/clients/c-robin"' in found.text
    assert "Robin (c-robin)" in found.text
    assert "c-robin" not in (await bo.get("/console/find", params={"q": "rob"})).text
    assert "c-robin" in (await ana.get("/console/find", params={"q": "C-ROB"})).text
    assert "No client found" in (await ana.get("/console/find",
                                                params={"q": "%"})).text  # not a wildcard

    page = await ana.get("/console/clients/c-robin")
    assert page.status_code == 200
    text = page.text
    assert "<h1>Robin (c-robin)</h1>" in text
    assert '<svg class="chart"' in text
    assert "Sessions per week, last 12 weeks: attended and missed" in text
    assert "Unreachable: the emergency contact could not be contacted" in text
    assert "The client was reached" in text
    assert 'href="tel:+14155550177"' in text
    assert "Lee (sister)" in text
    assert "emergency contact" in text
    assert "safety concern" in text
    assert "<script" not in text.split("</head>", 1)[1]  # no inline script

    refused = await bo.get("/console/clients/c-robin")
    assert refused.status_code == 403
    assert "not one of your clients" in refused.text
    assert (await ana.get("/console/clients/c-nobody")).status_code == 404
    log = {(a.clinician_id, a.page, a.client_ref, a.allowed)
           for a in await ConsoleStore(pool).accesses()}
    assert ("t-ana", "client", "c-robin", True) in log
    assert ("t-bo", "client", "c-robin", False) in log

    opened = await ana.get("/console/find", params={"q": "s-robin-1"})
    assert (opened.status_code, opened.headers["location"]) == (
        303, "/console/sessions/s-robin-1")

    today = await bo.get("/console/today")
    assert "My sessions today" in today.text
    assert 'href="/console/sessions/s-sky-today"' in today.text
    assert "s-robin" not in today.text
    assert "s-sky-today" not in (await ana.get("/console/today")).text


async def test_the_supervisor_reads_the_measures_and_their_csv(
    browsers: dict[str, httpx.AsyncClient],
) -> None:
    maya = browsers["s-maya"]
    page = await maya.get("/console/measures")
    assert page.status_code == 200
    for heading in ("No-show to first outreach", "Notice to acknowledgment",
                    "No-shows per week per therapist", "Notices run out, escalations",
                    "Outcomes of closed sessions"):
        assert heading in page.text
    assert page.text.count('<svg class="chart"') == 2
    assert "0.5 min" in page.text  # 30 s from each no-show to its call
    got = await maya.get("/console/measures.csv")
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    no_shows = [(r["therapist"], int(r["value"])) for r in rows if r["figure"] == "no_shows"]
    assert len(no_shows) == cases.MEASURE_WEEKS  # one therapist with no-shows, every week
    assert sorted(v for _, v in no_shows) == [0] * (cases.MEASURE_WEEKS - 2) + [1, 1]
    [median] = [r for r in rows if r["figure"] == "to_first_outreach_median_seconds"]
    assert median["value"] == "30"
    outcomes = {r["therapist"]: r["value"] for r in rows if r["figure"] == "outcome"}
    assert outcomes == {"attended": "1", "reached": "1", "unreachable_escalation_blocked": "1"}
    assert (await browsers["t-ana"].get("/console/measures")).status_code == 403
    assert (await browsers["t-ana"].get("/console/measures.csv")).status_code == 403


def test_median_and_p95() -> None:
    assert cases.spread([]) == cases.Spread(0, None, None)
    assert cases.spread([5.0]) == cases.Spread(1, 5.0, 5.0)
    assert cases.spread([1.0, 2.0, 3.0, 4.0]) == cases.Spread(4, 2.5, 4.0)
    values = [float(n) for n in range(1, 101)]
    assert cases.spread(values) == cases.Spread(100, 50.5, 95.0)
