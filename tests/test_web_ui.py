"""Seen in a real browser: a supervisor finds high-risk sessions and reads a decoded input.

The embedded stack as the demo runs it (dev server with Web UI, codec server on loopback,
worker, PostgreSQL), driven by headless Chromium from the OS packages (`.ci/run` installs
it). A screenshot of each page is kept under `artefacts/` for a person to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from demo import run_demo_day, temporal_cli
from missed_session.codec.encryption import EncryptionCodec, parse_key
from missed_session.codec.server import CodecServer, start_codec_server, ui_endpoint, ui_origins
from missed_session.domain.models import SessionBooking
from missed_session.local_secrets import new_secret
from missed_session.temporal import search_attributes
from tests.support.servers import TEST_CONVERTER, TEST_KEYS
from tests.support.web_ui import ARTEFACTS, CHROMIUM, CHROMIUM_FLAGS
from worker import callback_dispatcher, new_worker

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"),
        reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_supervisor_finds_high_risk_sessions_and_reads_a_decoded_input(
    pool: asyncpg.Pool,
) -> None:
    assert CHROMIUM is not None, "CI must install Chromium (see .ci/run)"
    from playwright.async_api import async_playwright

    ui_port, codec_port = free_port(), free_port()
    codec = EncryptionCodec({k: parse_key(k, v) for k, v in TEST_KEYS.items()}, "test-key-1")
    ui_secret = new_secret()
    codec_server = await start_codec_server(
        CodecServer(codec, ui_origins=ui_origins(ui_port), token=None, ui_secret=ui_secret),
        host="127.0.0.1", port=codec_port,
    )
    env = await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER,
        ui=True,
        ui_port=ui_port,
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            *search_attributes.dev_server_flags(),  # no codec endpoint: the browser's own
        ],
    )
    try:
        client, task_queue = env.client, f"ui-{uuid.uuid4().hex}"
        dispatcher = asyncio.create_task(callback_dispatcher(client, pool).run())
        try:
            async with new_worker(client, pool, task_queue=task_queue,
                                  sender=Sender("Alex at the front desk", "+15555550100")):
                await asyncio.wait_for(
                    run_demo_day(client, pool, task_queue=task_queue, time_scale=600,
                                 say=lambda _line: None),
                    timeout=120,
                )
        finally:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher

        [high_risk] = [w async for w in client.list_workflows('RiskTier="high"')]
        first_name = (await _decoded_input(client, high_risk.id)).client.first_name

        ARTEFACTS.mkdir(exist_ok=True)
        base = f"http://localhost:{ui_port}/namespaces/{client.namespace}"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_FLAGS
            )
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            # What a supervisor enters once in the UI's Codec Server settings: kept in the
            # browser's profile, never on a command line.
            await page.add_init_script(_codec_settings(ui_endpoint(port=codec_port,
                                                                   secret=ui_secret)))
            await page.goto(f"{base}/workflows?query=RiskTier%3D%22high%22")
            await page.get_by_role("link", name=high_risk.id).first.wait_for(timeout=30_000)
            await page.screenshot(path=str(ARTEFACTS / "web-ui-high-risk-sessions.png"))
            await page.get_by_role("link", name=high_risk.id).first.click()
            shown = page.get_by_text(f'"{first_name}"').first
            try:
                await shown.wait_for(timeout=30_000)
            finally:
                await page.screenshot(path=str(ARTEFACTS / "web-ui-session-decoded.png"))
                await browser.close()
        assert (ARTEFACTS / "web-ui-session-decoded.png").stat().st_size > 0
    finally:
        await env.shutdown()
        await codec_server.cleanup()


def _codec_settings(endpoint: str) -> str:
    """The Web UI's browser-side Codec Server settings (its persisted stores), as a script."""
    return (
        f"localStorage.setItem('endpoint', {json.dumps(json.dumps(endpoint))});"
        "localStorage.setItem('overrideRemoteCodecConfiguration', 'true');"
    )


async def _decoded_input(client: Client, workflow_id: str) -> SessionBooking:
    """The session's booking as the service (holding the key) decodes it."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [booking] = await client.data_converter.decode(started.input.payloads, [SessionBooking])
    assert isinstance(booking, SessionBooking)
    return booking
