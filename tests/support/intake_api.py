"""Helpers first written for tests/test_intake_api.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.config import Settings
from missed_session.intake.routes import standards_router
from missed_session.intake.settings import IntakeSettings
from tests.support.intake_stack import CALCOM_SECRET, close_sessions
from tests.support.servers import TEST_KEYS
from worker import new_worker


@pytest.fixture
async def api(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
              ) -> AsyncIterator[tuple[str, dict[Scope, str]]]:
    client = time_skipping_env.client
    tokens = {scope: new_token() for scope in Scope}
    api_settings = ApiSettings(tokens={scope: [digest(token)] for scope, token in tokens.items()})
    intake_settings = IntakeSettings(time_zone="America/Los_Angeles", country_code="1",
                                     calcom_secret=CALCOM_SECRET)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(Settings(task_queue=task_queue, encryption_keys=TEST_KEYS),
                        client=client, pool=pool) as application:
        app = create_app(application, api_settings,
                         extra_routers=[standards_router(application, intake_settings)])
        async with ApiServer(app) as server:
            yield server.url, tokens
        await close_sessions(client, pool)

