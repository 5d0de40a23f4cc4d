"""The HTTP API served for tests: a real uvicorn on a free port, a real worker behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from activities.outreach import Sender
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.config import Settings
from tests.conftest import TEST_KEYS
from worker import new_worker


@dataclass(frozen=True)
class Served:
    """A running API: its URL, a token per scope, the application behind it."""

    url: str
    tokens: dict[Scope, str]
    application: Application

    def client(self, scope: Scope | None = Scope.SCHEDULER) -> httpx.AsyncClient:
        headers = {} if scope is None else {"Authorization": f"Bearer {self.tokens[scope]}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
async def served(client: Client, pool: asyncpg.Pool, task_queue: str,
                 ) -> AsyncIterator[Served]:
    tokens = {scope: new_token() for scope in Scope}
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    api_settings = ApiSettings(tokens={scope: [digest(token)] for scope, token in tokens.items()})
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(settings, client=client, pool=pool) as application:
        server = ApiServer(create_app(application, api_settings))
        async with server:
            yield Served(server.url, tokens, application)
