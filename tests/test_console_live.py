"""The live notice list never destroys work (issue 26 item 2), in headless Chromium.

No Temporal here: the notices page reads PostgreSQL, so notices are written straight into
their tables while a therapist types an outcome into one notice's Resolve form. The list
updates around the form (a new urgent notice arrives above it, another is acknowledged
elsewhere and loses its button) and the typed text, the caret and the focus stay where
they were; a form left with text in it but no focus is kept too. axe-core checks the page
at desktop and phone width.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from missed_session.api.server import ApiServer
from missed_session.application import console as cases
from missed_session.console.serve import console_app
from missed_session.store.notices import NoticeStore
from tests.support.console import ON_CALL_ROSTER, PASSWORD, console_application, notice
from tests.support.console_browser import axe_serious
from tests.support.web_ui import ARTEFACTS, CHROMIUM, CHROMIUM_FLAGS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                               "chromium; .ci/run installs it)"),
]


@dataclass
class Live:
    url: str
    pool: asyncpg.Pool


@pytest.fixture
async def live(pool: asyncpg.Pool) -> AsyncIterator[Live]:
    application = await console_application(pool, ON_CALL_ROSTER, "t-ana")
    async with ApiServer(console_app(application)) as server:
        port = server.url.rsplit(":", 1)[1]
        yield Live(f"http://localhost:{port}", pool)  # localhost: Secure cookies kept


async def focused_id(page: Any) -> str:
    return str(await page.evaluate("document.activeElement && document.activeElement.id"))


async def test_typing_in_a_resolve_form_survives_the_list_updating(live: Live) -> None:
    from playwright.async_api import async_playwright, expect

    now = datetime.now(UTC)
    first = await notice(live.pool, "s-1", "no-show-alert", kind="alert", priority="urgent",
                         title="Client did not attend (client c-1)",
                         opened=now - timedelta(minutes=3))
    second = await notice(live.pool, "s-2", "escalation-blocked", kind="task",
                          priority="urgent", title="Escalation blocked (client c-2)",
                          opened=now - timedelta(minutes=2))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_FLAGS)
        for width in (1100, 390):
            context = await browser.new_context(viewport={"width": width, "height": 900})
            page = await context.new_page()
            await page.goto(f"{live.url}/console/sign-in")
            await page.get_by_label("Clinician id").fill("t-ana")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("heading", name="My notices").wait_for()
            if width == 1100:
                await run_the_typing_walk(page, live, first, second, width)
            assert await axe_serious(page) == [], width
            ARTEFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTEFACTS / f"console-live-notices-{width}.png"),
                                  full_page=True)
            await context.close()
        await browser.close()
    assert expect  # imported for the walk


async def run_the_typing_walk(page: Any, live: Live, first: str, second: str,
                              width: int) -> None:
    from playwright.async_api import expect

    cards = page.locator("ul.notices > li")
    await expect(cards).to_have_count(2)
    target = f"outcome-{cases.slug(second)}"
    outcome = page.locator(f"#{target}")
    await outcome.click()
    await page.keyboard.type("Called the GP; ")
    # While the therapist types: a new urgent notice arrives (it is listed first), and the
    # other notice is acknowledged elsewhere (its Acknowledge button goes).
    third = await notice(live.pool, "s-3", "no-show-alert", kind="alert", priority="urgent",
                         title="Client did not attend (client c-3)",
                         opened=datetime.now(UTC))
    await NoticeStore(live.pool).moved(first, "acknowledged", datetime.now(UTC),
                                       clinician_id="t-ana", via="sms")
    await expect(page.locator(f"#{cases.slug(third)}")).to_be_visible(timeout=15_000)
    await expect(page.locator(f"#{cases.slug(first)} form.ack")).to_have_count(
        0, timeout=15_000)
    await expect(cards).to_have_count(3)
    # The text, the focus and the caret are where the therapist left them: typing goes on.
    assert await focused_id(page) == target
    await page.keyboard.type("welfare check requested")
    await expect(outcome).to_have_value("Called the GP; welfare check requested")
    assert await focused_id(page) == target

    # Text left in a form without the focus survives the next update too.
    note = page.locator(f"#note-{cases.slug(second)}")
    await note.fill("GP to call back by 17:00")
    await page.locator("h1").click()  # the focus leaves the card
    fourth = await notice(live.pool, "s-4", "no-show-alert", kind="alert",
                          priority="routine", title="Client did not attend (client c-4)",
                          opened=datetime.now(UTC))
    await expect(page.locator(f"#{cases.slug(fourth)}")).to_be_visible(timeout=15_000)
    await expect(note).to_have_value("GP to call back by 17:00")
    await expect(outcome).to_have_value("Called the GP; welfare check requested")
    ARTEFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTEFACTS / f"console-typing-kept-{width}.png"),
                          full_page=True)

    # A refused resolution is shown in its own card, with what was typed, and the next
    # update leaves it there.
    await outcome.fill("   ")  # passes the browser's `required`; the server refuses it
    await note.fill("GP to call back by 17:00")
    await page.locator(f"#{cases.slug(second)}").get_by_role("button", name="Resolve").click()
    error = page.locator(f"#error-{cases.slug(second)}")
    await expect(error).to_contain_text("resolve refused: outcome")
    await expect(note).to_have_value("GP to call back by 17:00")
    fifth = await notice(live.pool, "s-5", "no-show-alert", kind="alert", priority="urgent",
                         title="Client did not attend (client c-5)", opened=datetime.now(UTC))
    await expect(page.locator(f"#{cases.slug(fifth)}")).to_be_visible(timeout=15_000)
    await expect(error).to_be_visible()
    await expect(note).to_have_value("GP to call back by 17:00")
