"""Helpers first written for tests/test_console_browser.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from demo import temporal_cli
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import Application
from missed_session.application import console as cases
from missed_session.config import Settings
from missed_session.console.routes import console_router
from missed_session.temporal import search_attributes
from tests.support.console import PASSWORD, accounts, load, roster
from tests.support.servers import TEST_CONVERTER, TEST_KEYS
from tests.support.web_ui import ARTEFACTS
from worker import callback_dispatcher, new_worker

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core-4.14.1.min.js"


# The walks' screenshots illustrate docs/console.md; a run refreshes them there only when
# asked (MSR_REFRESH_SCREENSHOTS=1), so that testing never leaves the working tree changed.
DOCS = (Path(__file__).resolve().parents[2] / "docs"
        if os.environ.get("MSR_REFRESH_SCREENSHOTS") == "1" else ARTEFACTS)


TIME_SCALE = 60


ROSTER = roster("t-ana", "t-bo", "oc-lee", "s-maya", on_call="oc-lee",
                supervisors={"t-ana": "s-maya"})
"""Everyone: two therapists (t-ana supervised by s-maya), one on call, the supervisor."""


ZONES = ("Pacific/Auckland", "Asia/Tokyo", "Asia/Kolkata", "Europe/Berlin", "Europe/London",
         "America/New_York", "America/Chicago", "America/Los_Angeles", "Pacific/Honolulu")


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
    await load(pool, ROSTER)
    task_queue = f"console-{uuid.uuid4().hex}"
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS, time_scale=TIME_SCALE)
    dispatcher = asyncio.create_task(callback_dispatcher(env.client, pool).run())
    try:
        async with new_worker(env.client, pool, task_queue=task_queue,
                              sender=Sender("Alex", "+15555550100")), \
                Application(settings, client=env.client, pool=pool) as application:
            await accounts(application, "t-ana", "t-bo", "s-maya")
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

