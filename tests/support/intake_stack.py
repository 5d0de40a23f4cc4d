"""A real intake stack for tests: worker, application layer, HTTP server, MLLP listener.

Against the time-skipping Temporal server and this test's PostgreSQL database, with the
FastAPI router served by uvicorn and the MLLP listener, both on free ports.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.application import Application
from missed_session.config import Settings
from missed_session.domain.models import AuditEventType, workflow_id_for
from missed_session.intake import mllp
from missed_session.intake.dispatch import Intake
from missed_session.intake.routes import router
from missed_session.intake.service import StandardsIntake
from missed_session.intake.settings import IntakeSettings
from missed_session.store.audit import AuditStore
from tests.support.factories import daytime
from worker import new_worker

CALCOM_SECRET = "calcom-test-secret"
CALENDLY_KEY = "calendly-test-key"
START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"


@dataclass
class Stack:
    """What a test talks to."""

    client: Client
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    base_url: str
    mllp_port: int
    intake: StandardsIntake
    start: datetime
    """A start a day ahead of both clocks, at 10:00 client time."""

    async def post(self, path: str, body: bytes | str, **headers: str) -> tuple[int, str]:
        data = body.encode() if isinstance(body, str) else body
        async with self.http.post(f"{self.base_url}{path}", data=data,
                                  headers=headers) as response:
            return response.status, await response.text()

    async def mllp(self, *chunks: bytes, answers: int = 1) -> list[str]:
        """Send raw bytes in chunks (one write each) and read `answers` framed ACKs."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.mllp_port)
        try:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.01)
            found: list[str] = []
            for _ in range(answers):
                block = await asyncio.wait_for(reader.readuntil(END_BLOCK), 30)
                assert block.startswith(START_BLOCK)
                found.append(block[1:-2].decode())
            return found
        finally:
            writer.close()
            await writer.wait_closed()

    async def exists(self, session_id: str) -> bool:
        try:
            await self.client.get_workflow_handle(workflow_id_for(session_id)).describe()
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    async def events(self, session_id: str) -> list[AuditEventType]:
        return [event.event_type for event in await AuditStore(self.pool).trail(session_id)]

    async def wait_for(self, session_id: str, event_type: AuditEventType) -> list[
            AuditEventType]:
        """The session's event types once `event_type` is among them (up to 20 s)."""
        for _ in range(400):
            found = await self.events(session_id)
            if event_type in found:
                return found
            await asyncio.sleep(0.05)
        msg = f"{session_id}: no {event_type.value} event; trail: {found}"
        raise AssertionError(msg)


def new_id(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def running_stack(env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
                        **intake_settings: object) -> AsyncIterator[Stack]:
    """Worker, application, intake service, HTTP server and MLLP listener, all running."""
    client = env.client
    settings = Settings(task_queue=task_queue)
    options = {"time_zone": "America/Los_Angeles", "country_code": "1",
               "calcom_secret": CALCOM_SECRET, "calendly_signing_key": CALENDLY_KEY,
               "mllp_port": 0, "therapists": {"Practitioner/t-ana": "t-ana"},
               **intake_settings}
    intake_config = IntakeSettings.model_validate(options)
    start = daytime(max(datetime.now(UTC), await env.get_current_time()) + timedelta(days=1))
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(settings, client=client, pool=pool) as app:
        service = StandardsIntake(Intake(app,
                                         future_skew=intake_config.future_skew),
                                  intake_config)
        api = FastAPI()
        api.include_router(router(service))
        server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=0,
                                               log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve())
        listener = await mllp.serve(service, "127.0.0.1", 0,
                                    limit=intake_config.max_message_bytes,
                                    frame_timeout=intake_config.mllp_frame_timeout_seconds)
        try:
            for _ in range(500):
                if server.started:
                    break
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            mllp_port = listener.sockets[0].getsockname()[1]
            async with aiohttp.ClientSession() as http:
                yield Stack(client, pool, http, f"http://127.0.0.1:{port}", mllp_port,
                            service, start)
        finally:
            listener.close()
            await listener.wait_closed()
            server.should_exit = True
            await serving
            await close_sessions(client, pool)


async def close_sessions(client: Client, pool: asyncpg.Pool) -> None:
    """Terminate the sessions this test started, while its worker still runs.

    Left open, a session's timer would fire in a later test's time skipping with no worker
    for its task queue, and the time-skipping server does not skip while a workflow task is
    outstanding: every later test that skips time would hang.
    """
    ids = {row["session_id"] for row in await pool.fetch(
        "SELECT session_id FROM intake_sessions UNION SELECT session_id FROM intake_messages"
        " WHERE session_id IS NOT NULL")}
    for session_id in ids:
        handle = client.get_workflow_handle(workflow_id_for(session_id))
        try:
            await handle.terminate(reason="test over")
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise


def framed(message: str) -> bytes:
    """One MLLP block."""
    return START_BLOCK + message.encode() + END_BLOCK
