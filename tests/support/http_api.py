"""The HTTP API served for tests: a real uvicorn on a free port, a real worker behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.config import Settings
from tests.support.factories import booking_data
from tests.support.servers import TEST_KEYS
from tests.support.starter import future_start
from worker import new_worker

CLINICIANS = ("t-ana", "oc-lee", "t-gone")
"""Clinicians given their own tokens (`t-gone` is on no roster the tests load)."""


@dataclass(frozen=True)
class Served:
    """A running API: its URL, a token per scope, the application behind it."""

    url: str
    tokens: dict[Scope, str]
    application: Application
    clinician_tokens: dict[str, str]

    def client(self, scope: Scope | None = Scope.SCHEDULER, *,
               clinician: str | None = None) -> httpx.AsyncClient:
        """A client with a token of `scope`, or with `clinician`'s own token."""
        token = (self.clinician_tokens[clinician] if clinician is not None
                 else None if scope is None else self.tokens[scope])
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
async def served(client: Client, pool: asyncpg.Pool, task_queue: str,
                 ) -> AsyncIterator[Served]:
    tokens = {scope: new_token() for scope in Scope}
    clinician_tokens = {clinician: new_token() for clinician in CLINICIANS}
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    api_settings = ApiSettings(
        tokens={scope: [digest(token)] for scope, token in tokens.items()},
        clinician_tokens={clinician: [digest(token)]
                          for clinician, token in clinician_tokens.items()})
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(settings, client=client, pool=pool) as application:
        server = ApiServer(create_app(application, api_settings))
        async with server:
            yield Served(server.url, tokens, application, clinician_tokens)


async def booked(served: Served, env: WorkflowEnvironment) -> dict[str, Any]:
    data = booking_data(start=(await future_start(env)).isoformat())
    async with served.client() as http:
        response = await http.post("/sessions", json=data)
    assert response.status_code == 201, response.text
    return data

