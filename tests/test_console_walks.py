"""Walks through the console as each role uses it (issue 26 item 6), in headless Chromium.

Behind it the same stack as `test_console_browser.py` (Temporal dev server, a real worker,
embedded PostgreSQL, protocol time 60x compressed). A high-risk client without consent for
their emergency contact misses a session:

- the therapist, on a 390-px phone: the alert card says who and what; the session page
  starts with the status and the decisions; an escalation with a legal basis is recorded and
  acknowledges the session's notices sent to them; the client page shows the attendance
  chart; "my sessions today" lists the session;
- the on-call clinician, on a desktop: the board (who is on call, what is blocked), the
  session page, today's sessions, a client found by name;
- the clinical supervisor, on a phone and a desktop: the board, the measures page with its
  charts and CSV.

axe-core finds no serious or critical violation on any page; the pages' screenshots go to
artefacts/ and the documentation's to docs/.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from missed_session.application import console as cases
from missed_session.store.notices import NoticeStore
from tests.support.console import PASSWORD
from tests.support.console_browser import DOCS, Stack, daytime_zone, shoot, stack  # noqa: F401 - the stack fixture, used by name
from tests.support.factories import booking_data, without_consent
from tests.support.web_ui import CHROMIUM, CHROMIUM_FLAGS

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                               "chromium; .ci/run installs it)"),
]


async def book(on: Stack) -> tuple[str, str]:
    now = datetime.now(UTC)
    data = without_consent(booking_data(therapist_id="t-ana", risk_tier="high",
                                        start=(now + timedelta(seconds=4)).isoformat()))
    data["client"] = {**data["client"], "first_name": "Robin",
                      "time_zone": daytime_zone(now)}
    result = await on.application.schedule(data)
    assert result.ok, result.message
    return str(data["session_id"]), str(data["client"]["ref"])


async def signed_in(browser: Any, on: Stack, clinician: str,
                    viewport: dict[str, int]) -> tuple[Any, Any]:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    await page.goto(f"{on.url}/console/sign-in")
    await page.get_by_label("Clinician id").fill(clinician)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="My notices").wait_for()
    return context, page


async def fits(page: Any) -> None:
    """Nothing wider than the viewport: no sideways scrolling (checked at phone width)."""
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, (page.url, overflow)


async def for_docs(page: Any, name: str, *, full_page: bool = False) -> None:
    """A screenshot for docs/console.md (by default the viewport: what is seen first)."""
    await page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=full_page)


async def test_each_role_walks_a_high_risk_no_show_on_a_phone_and_a_desktop(
    stack: Stack,  # noqa: F811 - the fixture
) -> None:
    from playwright.async_api import async_playwright, expect

    session_id, ref = await book(stack)
    assert (await cases.set_password(stack.application, "oc-lee", PASSWORD)).ok
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_FLAGS)
        # -- the therapist, on a phone -------------------------------------------------------
        context, page = await signed_in(browser, stack, "t-ana", PHONE)
        alert = page.locator("li.notice", has_text="No-show alert")
        await expect(alert).to_be_visible(timeout=60_000)
        await expect(alert).to_contain_text(f"Robin ({ref})")
        await expect(alert).to_contain_text("What the service did")
        await shoot(page, "walk-therapist-notices-phone")
        await fits(page)
        await for_docs(page, "notice-card-phone")
        await alert.get_by_role("link", name="open the session").click()
        await expect(page.locator("h1")).to_contain_text(f"Robin ({ref})")
        # Status and decisions first: the decisions start within the first two screens.
        box = await page.locator("#decide-heading").bounding_box()
        assert box is not None
        assert box["y"] < PHONE["height"] * 1.5, box
        await expect(page.locator("a[href='tel:+14155550123']")).to_be_visible()
        await shoot(page, "walk-therapist-session-phone")
        await fits(page)
        await for_docs(page, "session-phone")
        escalate = page.locator("#form-escalate_now")
        await escalate.get_by_label("Reason").fill("no answer; high risk; history of crisis")
        await escalate.get_by_label("Legal basis", exact=False).fill(
            "imminent risk to life: duty to protect")
        await escalate.get_by_role("button", name="Escalate now").click()
        await expect(page.get_by_role("status")).to_have_text("Recorded: escalate now.")
        # The decision acknowledged the session's notices sent to the therapist.
        rows = await NoticeStore(stack.pool).listed(unfinished_only=False)
        alert_row = next(r for r in rows if r.key == f"{session_id}/no-show-alert")
        assert (alert_row.state, alert_row.acknowledged_by) in {
            ("acknowledged", "t-ana"), ("resolved", "t-ana")}, alert_row
        await expect(page.locator("#trail")).to_contain_text(
            "Called the emergency contact on t-ana's decision", timeout=30_000)
        await page.locator("#contact-heading").scroll_into_view_if_needed()
        await page.get_by_role("link", name=f"Robin ({ref})").first.click()
        await expect(page.locator("h1")).to_have_text(f"Robin ({ref})")
        await expect(page.locator("svg.chart")).to_be_visible()
        await shoot(page, "walk-therapist-client-phone")
        await fits(page)
        await page.get_by_role("link", name="My sessions today").click()
        await expect(page.get_by_role("link", name=f"Robin ({ref})")).to_be_visible()
        await shoot(page, "walk-therapist-today-phone")
        await fits(page)
        await context.close()

        # -- the on-call clinician, on a desktop ---------------------------------------------
        context, page = await signed_in(browser, stack, "oc-lee", DESKTOP)
        await shoot(page, "walk-oncall-notices")
        await page.get_by_role("link", name="Practice board").click()
        await expect(page.get_by_role("heading", name="On call now")).to_be_visible()
        await expect(page.locator("[data-key=oncall]")).to_contain_text("oc-lee")
        await shoot(page, "walk-oncall-board")
        await for_docs(page, "board")
        await page.get_by_label("Client name, ref or session id").fill("robin")
        await page.get_by_role("button", name="Find").click()
        await page.get_by_role("link", name=f"Robin ({ref})").click()
        await expect(page.locator("h1")).to_have_text(f"Robin ({ref})")
        await shoot(page, "walk-oncall-client")
        await for_docs(page, "client", full_page=True)
        await page.goto(f"{stack.url}/console/sessions/{session_id}")
        await expect(page.locator("#trail")).to_contain_text("decided: escalate now")
        await shoot(page, "walk-oncall-session")
        await page.screenshot(path=str(DOCS / "console-session.png"), full_page=True)
        await page.get_by_role("link", name="Sessions today").click()
        await expect(page.get_by_text("therapist t-ana").first).to_be_visible()
        await shoot(page, "walk-oncall-today")
        await context.close()

        # -- the clinical supervisor, on a phone and a desktop -------------------------------
        for viewport, suffix in ((PHONE, "-phone"), (DESKTOP, "")):
            context, page = await signed_in(browser, stack, "s-maya", viewport)
            await page.goto(f"{stack.url}/console/board")
            await expect(page.get_by_role("heading", name="Escalations blocked today: a "
                                          "clinician must decide")).to_be_visible()
            await shoot(page, f"walk-supervisor-board{suffix}")
            await fits(page)
            await page.goto(f"{stack.url}/console/measures")
            await expect(page.locator("svg.chart")).to_have_count(2)
            await expect(page.get_by_text("Download these figures as CSV")).to_be_visible()
            await shoot(page, f"walk-supervisor-measures{suffix}")
            if not suffix:
                await for_docs(page, "measures")
            csv = await context.request.get(f"{stack.url}/console/measures.csv")
            assert csv.status == 200
            assert (await csv.text()).startswith("figure,week,therapist,value")
            await fits(page)
            await context.close()
        await browser.close()
