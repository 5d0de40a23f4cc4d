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

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from missed_session.application import ResultKind
from missed_session.application import console as cases
from missed_session.application import notices as notice_cases
from missed_session.domain.notices import Acknowledgment, AckVia
from missed_session.store.console import ConsoleStore
from tests.support.console import PASSWORD
from tests.support.console_browser import (
    Stack,
    daytime_zone,
    shoot,
    stack,  # noqa: F401 - fixtures, used by name
)
from tests.support.factories import booking_data, without_consent
from tests.support.web_ui import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                               "chromium; .ci/run installs it)"),
]


async def book(stack: Stack, therapist: str, *, seconds_ahead: int = 4) -> str:  # noqa: F811
    now = datetime.now(UTC)
    data = without_consent(booking_data(
        therapist_id=therapist, risk_tier="high",
        start=(now + timedelta(seconds=seconds_ahead)).isoformat()))
    data["client"] = {**data["client"], "time_zone": daytime_zone(now)}
    result = await stack.application.schedule(data)
    assert result.ok, result.message
    return str(data["session_id"])


async def sign_in(browser: Any, stack: Stack, clinician: str, *,  # noqa: F811
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
    stack: Stack,  # noqa: F811
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
