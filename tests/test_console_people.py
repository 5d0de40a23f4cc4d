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

import asyncpg
import httpx

from missed_session.application import console as cases
from missed_session.store.console import ConsoleStore
from tests.support.console_people import app, browsers  # noqa: F401 - fixtures, used by name


async def test_a_therapist_finds_a_client_by_name_and_sees_their_attendance(
    browsers: dict[str, httpx.AsyncClient], pool: asyncpg.Pool,  # noqa: F811
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
    browsers: dict[str, httpx.AsyncClient],  # noqa: F811
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
