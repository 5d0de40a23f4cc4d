"""The clinician console in a real browser: headless Chromium against a real uvicorn.

Behind it: the Temporal dev server (the practice board lists sessions by search attribute,
which the time-skipping server does not implement), a real worker, embedded PostgreSQL. A
high-risk client without consent on file misses a session booked a few seconds ahead
(protocol timings compressed 60x): the therapist signs in, acknowledges the no-show alert,
escalates now with a reason and a legal basis and sees the trail update, is refused a second
escalation in the form, adds a note with script in it (shown as text), is refused another
therapist's session and a forged form; a compliance reviewer reads but cannot decide; the
supervisor's board lists the session. axe-core (vendored from npm) scans every page; a
screenshot of each is kept under artefacts/.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from demo import temporal_cli
from missed_session import search_attributes
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import Application, ResultKind
from missed_session.application import console as cases
from missed_session.application import notices as notice_cases
from missed_session.config import Settings
from missed_session.console.routes import console_router
from missed_session.domain.notices import Acknowledgment, AckVia
from missed_session.domain.roster_file import parse_roster
from missed_session.store.console import ConsoleStore
from missed_session.store.notices import RosterStore
from tests.conftest import TEST_CONVERTER, TEST_KEYS
from tests.factories import booking_data, without_consent
from tests.test_web_ui import ARTEFACTS, CHROMIUM, CHROMIUM_FLAGS
from worker import callback_dispatcher, new_worker

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1.min.js"
# The walks' screenshots illustrate docs/console.md; a run refreshes them there only when
# asked (MSR_REFRESH_SCREENSHOTS=1), so that testing never leaves the working tree changed.
DOCS = (Path(__file__).resolve().parents[1] / "docs"
        if os.environ.get("MSR_REFRESH_SCREENSHOTS") == "1" else ARTEFACTS)
PASSWORD = "correct horse battery"
TIME_SCALE = 60
ROSTER = """
[roster]
time_zone = "America/New_York"
accept_coverage_gaps = true

[roster.clinicians.t-ana]
role = "therapist"
sms = "+14155550101"
supervisor = "s-maya"

[roster.clinicians.t-bo]
role = "therapist"
sms = "+14155550103"

[roster.clinicians.oc-lee]
role = "on_call_clinician"
sms = "+14155550102"

[roster.clinicians.s-maya]
role = "clinical_supervisor"
sms = "+14155550104"

[[roster.on_call]]
clinician = "oc-lee"
"""
ZONES = ("Pacific/Auckland", "Asia/Tokyo", "Asia/Kolkata", "Europe/Berlin", "Europe/London",
         "America/New_York", "America/Chicago", "America/Los_Angeles", "Pacific/Honolulu")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                               "chromium; .ci/run installs it)"),
]


def daytime_zone(now: datetime) -> str:
    """A zone where it is 10:00-16:59 now, so outreach is inside the contact window."""
    return next(zone for zone in ZONES if 10 <= now.astimezone(ZoneInfo(zone)).hour < 17)


@dataclass
class Stack:
    url: str
    application: Application
    client: Client
    pool: asyncpg.Pool


@pytest.fixture
async def stack(pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    env = await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER, dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=search_attributes.dev_server_flags())
    loaded = parse_roster(ROSTER, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    task_queue = f"console-{uuid.uuid4().hex}"
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS, time_scale=TIME_SCALE)
    dispatcher = asyncio.create_task(callback_dispatcher(env.client, pool).run())
    try:
        async with new_worker(env.client, pool, task_queue=task_queue,
                              sender=Sender("Alex", "+15555550100")), \
                Application(settings, client=env.client, pool=pool) as application:
            for clinician in ("t-ana", "t-bo", "s-maya"):
                assert (await cases.set_password(application, clinician, PASSWORD)).ok
            assert (await cases.set_password(application, "rev-kai", PASSWORD,
                                             reviewer=True)).ok
            api = create_app(application, ApiSettings(tokens={}),
                             [console_router(application)])
            async with ApiServer(api) as server:
                port = server.url.rsplit(":", 1)[1]
                # localhost: Chromium keeps Secure cookies from it over plain HTTP.
                yield Stack(f"http://localhost:{port}", application, env.client, pool)
    finally:
        dispatcher.cancel()
        await asyncio.gather(dispatcher, return_exceptions=True)
        await env.shutdown()


async def book(stack: Stack, therapist: str, *, seconds_ahead: int = 4) -> str:
    now = datetime.now(UTC)
    data = without_consent(booking_data(
        therapist_id=therapist, risk_tier="high",
        start=(now + timedelta(seconds=seconds_ahead)).isoformat()))
    data["client"] = {**data["client"], "time_zone": daytime_zone(now)}
    result = await stack.application.schedule(data)
    assert result.ok, result.message
    return str(data["session_id"])


async def axe_serious(page: Any) -> list[str]:
    """Serious and critical axe-core violations on the page, as `id: help (n nodes)`."""
    await page.evaluate(AXE.read_text())  # evaluated, not a <script>: the CSP stays on
    found = await page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => ['serious', 'critical'].includes(v.impact))
            .map(v => `${v.id}: ${v.help} (${v.nodes.length})`);
    }""")
    return list(found)


async def shoot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTEFACTS / f"console-{name}.png"), full_page=True)
    assert await axe_serious(page) == [], name


async def sign_in(browser: Any, stack: Stack, clinician: str, *,
                  width: int = 1100) -> tuple[Any, Any]:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    await page.goto(f"{stack.url}/console/sign-in")
    await page.get_by_label("Clinician id").fill(clinician)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="My notices").wait_for()
    return context, page


async def test_a_therapist_walks_a_high_risk_no_show_from_alert_to_decision(
    stack: Stack,
) -> None:
    from playwright.async_api import async_playwright, expect

    mine, theirs = await book(stack, "t-ana"), await book(stack, "t-bo", seconds_ahead=3600)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_FLAGS)
        # Sign-in: a wrong password is refused with one message for every cause.
        context = await browser.new_context(viewport={"width": 1100, "height": 900})
        page = await context.new_page()
        await page.goto(f"{stack.url}/console/notices")  # not signed in: to the sign-in page
        await page.get_by_label("Clinician id").fill("t-ana")
        await page.get_by_label("Password").fill("not the password")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_have_text(
            "Unknown clinician id or wrong password.")
        await shoot(page, "sign-in")
        cookies_before = await context.cookies()
        assert all(c["name"] != "msr_console" for c in cookies_before)
        await context.close()

        context, page = await sign_in(browser, stack, "t-ana")
        [cookie] = [c for c in await context.cookies() if c["name"] == "msr_console"]
        assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (
            True, True, "Strict")

        # My notices: the no-show alert and the escalation-blocked task arrive by themselves.
        acknowledge = page.get_by_role("button", name="Acknowledge")
        await expect(acknowledge).to_have_count(2, timeout=60_000)
        session_link = page.locator(f"a[href='/console/sessions/{mine}']")
        await expect(session_link.first).to_be_visible()
        # The card says it all: who, what happened, what was done, what is asked, who next.
        alert = page.locator("li.notice", has_text="No-show alert")
        await expect(alert).to_contain_text("What the service did")
        await expect(alert).to_contain_text("grace period: recorded as a no-show")
        await expect(alert).to_contain_text("Acknowledge that you have seen it")
        await expect(alert).to_contain_text("Goes to the on-call clinician (oc-lee) at")
        await alert.locator("summary").click()
        await expect(alert.locator("details.ladder")).to_contain_text("Sent to t-ana")
        await shoot(page, "my-notices")
        await acknowledge.first.click()
        await expect(page.get_by_role("status")).to_have_text("Notice acknowledged.")
        await expect(acknowledge).to_have_count(1)

        # Acknowledged elsewhere (by SMS, the CLI): it leaves the page without a reload.
        [row] = [r for r in await cases.my_notices(stack.application, _ana())
                 if r.state in ("open", "exhausted")]
        done = await notice_cases.acknowledge(stack.client, stack.pool, row.key, Acknowledgment(
            via=AckVia.CLI, clinician_id="t-ana"))
        assert done.kind is ResultKind.APPLIED, done.message
        await expect(acknowledge).to_have_count(0, timeout=15_000)
        resolve = page.locator("form.resolve").first
        await resolve.get_by_label("Outcome").fill("reviewed with the on-call clinician")
        await resolve.get_by_role("button", name="Resolve").click()
        await expect(page.get_by_role("status")).to_have_text("Notice resolved.")
        await expect(page.locator("form.resolve")).to_have_count(1)

        # The session: status, the trail, the decisions possible now.
        await session_link.first.click()
        await expect(page.locator("h1")).to_contain_text("session")
        trail = page.locator("#trail")
        await expect(trail).to_contain_text("grace period: recorded as a no-show")
        await expect(page.locator(".attempts")).to_contain_text(" of 3")
        await expect(page.locator("#contact-heading")).to_be_visible()
        await expect(page.locator("a[href='tel:+14155550999']")).to_be_visible()
        escalate = page.locator("#form-escalate_now")
        await escalate.get_by_label("Reason").fill("no answer on three channels; high risk")
        await escalate.get_by_role("button", name="Escalate now").click()
        await expect(page.locator("#error-escalate_now")).to_have_text(
            "a legal basis is required to escalate")
        await page.locator("#form-escalate_now").get_by_label("Legal basis", exact=False).fill(
            "imminent risk to life: duty to protect")
        await page.locator("#form-escalate_now").get_by_role(
            "button", name="Escalate now").click()
        await expect(page.get_by_role("status")).to_have_text("Recorded: escalate now.")
        await expect(trail).to_contain_text("imminent risk to life: duty to protect")
        await expect(trail).to_contain_text("Called the emergency contact on t-ana's decision",
                                            timeout=30_000)  # live, no reload
        await shoot(page, "session")

        # A second escalation is not offered (it could not succeed), and the page says why.
        await expect(page.locator("#form-escalate_now")).to_have_count(0)
        await expect(page.get_by_text("Escalate now is not offered: the emergency contact "
                                      "has already been contacted")).to_be_visible()

        # Script in a note is shown as text, never run.
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        note = page.locator("#form-add_note")
        await note.get_by_label("Note").fill("<script>alert('x')</script><b>bold</b>")
        await note.get_by_role("button", name="Add note").click()
        await expect(trail).to_contain_text("<script>alert('x')</script><b>bold</b>")
        assert await page.locator("#trail script, #trail b").count() == 0
        assert dialogs == []

        # An over-long note (past the field's limit, sent anyway) is refused in the form.
        await note.get_by_label("Note").evaluate("area => area.removeAttribute('maxlength')")
        await note.get_by_label("Note").fill("x" * 501)
        await note.get_by_role("button", name="Add note").click()
        await expect(page.locator("#error-add_note")).to_contain_text("reason: ")
        await expect(page.locator("#error-add_note")).to_contain_text("500 characters")

        # A forged form (the CSRF token not this session's) is refused; nothing is recorded.
        before = len((await stack.application.audit(mine)).trail)
        await page.locator("#form-add_note input[name=csrf_token]").evaluate(
            "input => input.value = 'forged'")
        await page.locator("#form-add_note").get_by_label("Note").fill("forged note")
        await page.locator("#form-add_note").get_by_role("button", name="Add note").click()
        await expect(page.get_by_role("alert")).to_contain_text("Nothing was done")
        assert len((await stack.application.audit(mine)).trail) == before

        # Another therapist's session: refused, and the refusal is in the access log.
        response = await page.goto(f"{stack.url}/console/sessions/{theirs}")
        assert response is not None
        assert response.status == 403
        await expect(page.get_by_role("alert")).to_contain_text(
            "is not one of your clients' sessions")
        assert await page.get_by_role("link", name="Practice board").count() == 0
        await context.close()

        # A compliance reviewer reads the trail and decides nothing.
        context, page = await sign_in(browser, stack, "rev-kai")
        await page.goto(f"{stack.url}/console/sessions/{mine}")
        await expect(page.locator("#trail")).to_contain_text("decided: escalate now")
        assert await page.locator("form.decision").count() == 0
        # The session runs to its end while the page is open: the plan and the closed trail.
        await expect(page.locator("#trail")).to_contain_text("Closed: ", timeout=120_000)
        plan = page.locator("section", has=page.get_by_role("heading", name="Follow-up plan"))
        await expect(plan).to_contain_text("no-show")
        await expect(plan).to_contain_text("Concerns")
        await expect(page.locator("[data-status]")).to_have_text("Closed")
        await shoot(page, "session-closed-reviewer")
        await context.close()

        # The supervisor signs in by keyboard alone, and reads the board at phone width.
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        page = await context.new_page()
        await page.goto(f"{stack.url}/console/sign-in")
        await page.keyboard.type("s-maya")  # the id field has the focus
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await page.get_by_role("heading", name="My notices").wait_for()
        await page.get_by_role("link", name="Practice board").click()
        await expect(page.get_by_role("heading", name="Today's no-shows")).to_be_visible()
        await expect(page.get_by_role("link", name=f"session {mine}").first).to_be_visible()
        await shoot(page, "board-phone")
        await context.close()
        await browser.close()

    log = await ConsoleStore(stack.pool).accesses()
    assert ("t-ana", "session", mine, True) in {
        (a.clinician_id, a.page, a.session_id, a.allowed) for a in log}
    assert ("t-ana", "session", theirs, False) in {
        (a.clinician_id, a.page, a.session_id, a.allowed) for a in log}
    assert ("rev-kai", "session", mine, True) in {
        (a.clinician_id, a.page, a.session_id, a.allowed) for a in log}


def _ana() -> Any:
    from missed_session.domain.access import Viewer, ViewerRole
    return Viewer("t-ana", ViewerRole.THERAPIST, "")
