"""The deployment's one-shot set-up steps against real servers (docker-compose.yml runs them)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from missed_session.config import load_settings
from missed_session.provision import main, migrate_database, register_search_attributes
from missed_session.store.database import migrations
from missed_session.temporal import search_attributes
from tests.support.servers import TEST_KEYS, installed_binary


async def test_migrate_brings_a_fresh_database_up_to_date_once(postgres_server_url: str) -> None:
    name = f"p_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    settings = load_settings(database_url=postgres_server_url.replace("/postgres?", f"/{name}?"),
                             encryption_keys=TEST_KEYS)
    applied = await migrate_database(settings)
    assert applied == [migration.name for migration in migrations()]
    assert await migrate_database(settings) == []  # a second `up` changes nothing


async def test_search_attributes_are_registered_on_a_fresh_namespace() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"))
    try:
        target = env.client.service_client.config.target_host
        settings = load_settings(temporal_address=target, encryption_keys=TEST_KEYS)
        names = await register_search_attributes(settings)
        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default"))
        assert set(names) == {key.name for key in search_attributes.ALL}
        assert set(names) <= set(listed.custom_attributes)
        await register_search_attributes(settings)  # idempotent
    finally:
        await env.shutdown()


def test_a_bad_setting_stops_the_step_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MSR_DATABASE_URL", "postgresql://nowhere/db")
    monkeypatch.delenv("MSR_ENCRYPTION_KEYS", raising=False)
    assert main(["migrate"]) == 2
    assert "encryption_keys is required" in capsys.readouterr().err
