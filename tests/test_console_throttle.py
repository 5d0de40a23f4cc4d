"""Sign-in throttling (issue 24 item 5) through the console's own routes.

An attacker's 200 guesses at one account, one every two seconds: the first few are checked
(401), then each must wait longer, then the account is locked and the right password is
refused too (429) until the lockout ends; every failure, refusal and the lockout are in the
access log. A password spray over many ids from one address locks the address, not the
accounts. The policy itself is pure and tested without servers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from missed_session.application import console as cases
from missed_session.application.service import Application
from missed_session.config import Settings
from missed_session.console.routes import console_router
from missed_session.domain.roster_file import parse_roster
from missed_session.store.console import ConsoleStore
from missed_session.store.notices import RosterStore
from tests.support.servers import TEST_KEYS

PASSWORD = "a long enough password"
ROSTER = """
[roster]
time_zone = "America/New_York"
accept_coverage_gaps = true
[roster.clinicians.t-ana]
role = "therapist"
sms = "+14155550101"
"""
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    """The console's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def app(pool: asyncpg.Pool) -> Application:
    loaded = parse_roster(ROSTER, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    application = Application(Settings(encryption_keys=TEST_KEYS), pool=pool)
    assert (await cases.set_password(application, "t-ana", PASSWORD)).ok
    return application


async def attempt(http: httpx.AsyncClient, clinician: str, password: str) -> httpx.Response:
    form = await http.get("/console/sign-in")
    csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return await http.post("/console/sign-in", data={
        "csrf_token": csrf, "clinician_id": clinician, "password": password})


def console(app: Application, clock: Clock, address: str) -> httpx.AsyncClient:
    api = FastAPI()
    api.include_router(console_router(app, secure_cookies=False, clock=clock))
    transport = httpx.ASGITransport(app=api, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


async def test_200_guesses_lock_the_account_and_the_right_password_waits_it_out(
    app: Application, pool: asyncpg.Pool,
) -> None:
    clock = Clock()
    statuses: list[int] = []
    async with console(app, clock, "203.0.113.7") as http:
        for _ in range(200):
            response = await attempt(http, "t-ana", "not the password")
            statuses.append(response.status_code)
            clock.now += timedelta(seconds=2)
        counts = Counter(statuses)
        # 3 free, then waits of 1, 2, 4, 8, 16, 32, 60 s (guesses inside a wait refused
        # unchecked), and locked at the 10th failure (at 128 s): every later guess refused.
        checked = [i for i, status in enumerate(statuses) if status == 401]
        assert checked == [0, 1, 2, 3, 4, 6, 10, 18, 34, 64]
        assert counts[429] == 200 - cases.THROTTLE.lock_after

        # The right password during the lockout: refused, no cookie, a clear message.
        locked = await attempt(http, "t-ana", PASSWORD)
        assert locked.status_code == 429
        assert "msr_console=" not in locked.headers.get("set-cookie", "")
        assert "sign-in is locked for about" in locked.text
        assert int(locked.headers["Retry-After"]) > 0
        # ...from another address too: the account is locked, not only the address.
        async with console(app, clock, "198.51.100.9") as elsewhere:
            assert (await attempt(elsewhere, "t-ana", PASSWORD)).status_code == 429

        # Once the lockout has passed, the right password works and clears the count.
        clock.now += cases.THROTTLE.lockout
        signed = await attempt(http, "t-ana", PASSWORD)
        assert signed.status_code == 303
        assert "msr_console=" in signed.headers["set-cookie"]
        assert (await attempt(http, "t-ana", "one typo")).status_code == 401

    log = await ConsoleStore(pool).accesses()
    pages = Counter(a.page for a in log)
    assert pages["sign-in failed"] == cases.THROTTLE.lock_after + 1
    assert pages["sign-in lockout"] == 1
    assert pages["sign-in refused: locked"] + pages["sign-in refused: too soon"] == 192
    assert pages["sign-in"] == 1
    assert all(not a.allowed for a in log if a.page != "sign-in")
    assert {a.source for a in log} == {"203.0.113.7", "198.51.100.9"}
    assert {a.clinician_id for a in log} == {"t-ana"}


async def test_a_spray_over_many_ids_locks_the_address_not_the_accounts(
    app: Application, pool: asyncpg.Pool,
) -> None:
    clock = Clock()
    async with console(app, clock, "203.0.113.8") as http:
        statuses = []
        for n in range(40):
            statuses.append((await attempt(http, f"guess-{n}", "Winter2026!!")).status_code)
            clock.now += cases.THROTTLE.max_delay + timedelta(seconds=1)
        assert statuses[:30] == [401] * 30
        assert statuses[30:] == [429] * 10
        refused = await attempt(http, "t-ana", PASSWORD)
        assert refused.status_code == 429
        assert "locked" in refused.text
    async with console(app, clock, "198.51.100.10") as elsewhere:  # t-ana's own address
        assert (await attempt(elsewhere, "t-ana", PASSWORD)).status_code == 303
    pages = Counter(a.page for a in await ConsoleStore(pool).accesses())
    assert pages["sign-in lockout"] == 1


async def test_guesses_in_parallel_are_counted_one_after_the_other(
    app: Application, pool: asyncpg.Pool,
) -> None:
    guesses = await asyncio.gather(*(
        cases.sign_in(app, "t-ana", f"guess number {n}", START, source="203.0.113.9")
        for n in range(50)))
    checked = [g for g in guesses if g is None]
    assert len(checked) == cases.THROTTLE.free  # the rest refused before any argon2 work
    assert all(isinstance(g, cases.Throttled) for g in guesses if g is not None)
    pages = Counter(a.page for a in await ConsoleStore(pool).accesses())
    assert pages["sign-in failed"] == cases.THROTTLE.free
    assert pages["sign-in refused: too soon"] == 50 - cases.THROTTLE.free
    # The right password, once the wait is over: accepted, and the failures forgotten.
    later = START + timedelta(seconds=2)
    assert isinstance(await cases.sign_in(app, "t-ana", PASSWORD, later,
                                          source="203.0.113.9"), cases.SignIn)
    assert await ConsoleStore(pool).failures(clinician_id="t-ana", source="x",
                                             since=START) == ([], [])


def test_the_policy_grows_the_wait_then_locks() -> None:
    policy = cases.ThrottlePolicy()
    t0 = START

    def failures(n: int) -> list[datetime]:
        return [t0 + timedelta(seconds=i) for i in range(n)]

    assert cases.throttle(failures(2), [], t0 + timedelta(seconds=2)) is None
    waits = []
    for n in range(3, 10):
        held = cases.throttle(failures(n), [], failures(n)[-1])
        assert held is not None
        assert not held.locked
        waits.append((held.until - failures(n)[-1]).total_seconds())
    assert waits == [1, 2, 4, 8, 16, 32, 60]
    held = cases.throttle(failures(10), [], t0 + timedelta(minutes=5))
    assert held is not None
    assert held.locked
    assert held.until == failures(10)[-1] + policy.lockout
    assert cases.throttle(failures(10), [], held.until) is None  # the lockout ends
    assert "locked for about 10 minutes" in held.message(held.until - timedelta(minutes=10))
    assert held.message(held.until - timedelta(seconds=30)).startswith(
        "Too many failed sign-ins: sign-in is locked for about 1 minute.")
