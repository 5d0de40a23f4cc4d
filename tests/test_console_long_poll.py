"""A live region long-polls (issue 26): answered as soon as something changed, else held.

Over HTTP against the real console app and PostgreSQL (no browser: `test_console_live.py`
walks the same regions in Chromium). A notice written while a request is held answers it
within a cursor check; nothing changing holds it for the long-poll's length and answers 204,
with the change cursor for the next request; a change that does not touch what the page
shows is taken as seen without an answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from missed_session.api.server import ApiServer
from missed_session.application import console as cases
from missed_session.console import routes
from missed_session.console.serve import console_app
from missed_session.console.web import SESSION_COOKIE
from tests.support.console import ON_CALL_ROSTER, PASSWORD, console_application, notice

HELD = 3.0
"""The long poll's length here (25 s in service), so the test is short."""


@dataclass
class Console:
    http: httpx.AsyncClient
    pool: asyncpg.Pool


@pytest.fixture
async def console(pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Console]:
    monkeypatch.setattr(routes, "LONG_POLL_SECONDS", HELD)
    monkeypatch.setattr(routes, "CURSOR_CHECK_SECONDS", 0.2)
    application = await console_application(pool, ON_CALL_ROSTER, "t-ana")
    signed = await cases.sign_in(application, "t-ana", PASSWORD, datetime.now(UTC))
    assert isinstance(signed, cases.SignIn)
    async with ApiServer(console_app(application)) as server, httpx.AsyncClient(
        base_url=server.url, cookies={SESSION_COOKIE: signed.token}, timeout=30,
    ) as http:
        yield Console(http, pool)


async def live(console: Console, version: str, cursor: str | None) -> httpx.Response:
    params = {"v": version} | ({"c": cursor} if cursor is not None else {})
    return await console.http.get("/console/notices/live", params=params,
                                  headers={"X-Live": "1"})


def version_of(response: httpx.Response) -> str:
    found = re.search(r'data-live-version="([0-9a-f]+)"', response.text)
    assert found is not None
    return found.group(1)


async def test_a_held_request_answers_as_soon_as_a_notice_arrives_and_idles_otherwise(
    console: Console,
) -> None:
    # The first request (no cursor yet) answers at once, with the region and the cursor.
    first = await live(console, "none", None)
    assert first.status_code == 200
    cursor, version = first.headers[routes.CURSOR_HEADER], version_of(first)

    # Nothing changes: held for the long poll's length, then 204 and the same cursor.
    began = time.monotonic()
    idle = await live(console, version, cursor)
    assert idle.status_code == 204
    assert HELD <= time.monotonic() - began < HELD + 2
    assert idle.headers[routes.CURSOR_HEADER] == cursor

    # A notice for t-ana arrives while the request is held: it answers within a check.
    held = asyncio.create_task(live(console, version, cursor))
    await asyncio.sleep(0.5)
    arrived = time.monotonic()
    key = await notice(console.pool, "s-9", "no-show-alert", kind="alert", priority="urgent",
                       title="Client did not attend (client c-9)", opened=datetime.now(UTC))
    answer = await held
    assert answer.status_code == 200
    assert time.monotonic() - arrived < 1.5
    assert cases.slug(key) in answer.text
    assert answer.headers[routes.CURSOR_HEADER] != cursor


async def test_a_change_that_does_not_touch_the_page_is_taken_as_seen(console: Console) -> None:
    first = await live(console, "none", None)
    cursor, version = first.headers[routes.CURSOR_HEADER], version_of(first)
    held = asyncio.create_task(live(console, version, cursor))
    await asyncio.sleep(0.5)
    # Another clinician's inbox changes: the cursor moves, this page does not.
    await console.pool.execute(
        "INSERT INTO therapist_inbox (key, session_id, therapist_id, kind, priority, title)"
        " VALUES ('s-8/no-show-alert', 's-8', 't-bo', 'alert', 'routine', 'not ours')")
    answer = await held
    assert answer.status_code == 204  # held to the end: nothing of t-ana's changed
    assert answer.headers[routes.CURSOR_HEADER] != cursor
