"""The stand-alone MLLP listener (python -m missed_session.intake.listener) from settings."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.config import load_settings
from missed_session.domain.models import workflow_id_for
from missed_session.intake import listener
from missed_session.intake.settings import IntakeSettings
from tests.support import intake_samples as samples
from tests.support.factories import daytime
from tests.support.intake_stack import END_BLOCK, framed, new_id
from tests.support.servers import TEST_KEYS


async def test_listener_answers_from_the_configured_stack(
        monkeypatch: pytest.MonkeyPatch, time_skipping_env: WorkflowEnvironment,
        database_url: str, task_queue: str) -> None:
    monkeypatch.delenv("MSR_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATABASE_URL", database_url)
    monkeypatch.setenv("MSR_TASK_QUEUE", task_queue)
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS",
                       time_skipping_env.client.service_client.config.target_host)
    monkeypatch.setenv("MSR_INTAKE_MLLP_PORT", "0")
    monkeypatch.setenv("MSR_INTAKE_TIME_ZONE", "America/Los_Angeles")
    monkeypatch.setenv("MSR_INTAKE_COUNTRY_CODE", "1")
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(listener.serve(load_settings(), IntakeSettings(), stop,
                                                 port.set_result))
    session = new_id()
    start = daytime(max(datetime.now(UTC), await time_skipping_env.get_current_time())
                    + timedelta(days=1))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1",
                                                       await asyncio.wait_for(port, 30))
        writer.write(framed(samples.siu("S12", "L1", session, start)))
        await writer.drain()
        ack = (await asyncio.wait_for(reader.readuntil(END_BLOCK), 30)).decode()
        writer.close()
        await writer.wait_closed()
    finally:
        stop.set()
        await serving
    assert "MSA|AA|L1|" in ack
    handle = time_skipping_env.client.get_workflow_handle(workflow_id_for(session))
    assert (await handle.describe()).id == workflow_id_for(session)
    # No worker polls this task queue: an open session would stop later time skipping.
    await handle.terminate(reason="test over")
