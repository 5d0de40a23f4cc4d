"""Helpers first written for tests/test_audit_export.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from missed_session.domain.models import AuditEvent
from tests.support.audit_replay import load, trail_from_history
from tests.support.servers import TEST_KEYS


async def recorded_trail(path: Path) -> list[AuditEvent]:
    return await trail_from_history(load(path))


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, service_database_url: str) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)

