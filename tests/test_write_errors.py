"""A write that fails because of what it carries is told apart from a passing failure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import httpx
import pytest

from missed_session.api.app import create_app
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.config import Settings
from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.store.append import AuditParentMissingError
from missed_session.store.audit import AuditStore
from missed_session.store.write_errors import is_deterministic, is_store_failure
from tests.support.factories import booking_data
from tests.support.servers import TEST_KEYS

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


async def test_a_nul_in_audit_data_fails_the_same_way_every_time(pool: asyncpg.Pool) -> None:
    """What used to make the audit activity retry forever (a NUL in a clinician's note)."""
    store = AuditStore(pool)
    event = AuditEvent(session_id="s-1", sequence=1, event_type=AuditEventType.SCHEDULED,
                       occurred_at=AT, data={"note": "a\x00b"})
    errors = []
    for _ in range(2):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await store.record([event])
        errors.append(caught.value)
    assert all(is_deterministic(error) for error in errors)
    assert type(errors[0]) is type(errors[1])
    assert await store.trail("s-1") == []


async def test_a_missing_parent_and_a_lost_connection_are_passing(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    with pytest.raises(AuditParentMissingError) as caught:
        await store.record([AuditEvent(session_id="s-2", sequence=2,
                                      event_type=AuditEventType.CHECKED_IN, occurred_at=AT)])
    assert not is_deterministic(caught.value)
    assert not is_deterministic(ConnectionResetError())
    assert not is_deterministic(TimeoutError())
    assert not is_deterministic(asyncpg.DeadlockDetectedError("deadlock"))
    assert not is_deterministic(asyncpg.CannotConnectNowError("starting up"))


def test_every_driver_error_on_a_use_case_path_is_a_store_failure() -> None:
    """asyncpg's "cannot switch to state 15" (PostgreSQL stopped inside a commit) included."""
    assert is_store_failure(asyncpg.InternalClientError("cannot switch to state 15"))
    assert is_store_failure(asyncpg.ConnectionDoesNotExistError("closed in the middle"))
    assert is_store_failure(asyncpg.CannotConnectNowError("shutting down"))
    assert is_store_failure(ConnectionResetError())
    assert is_store_failure(TimeoutError())
    assert not is_store_failure(KeyError("ours"))
    assert not is_deterministic(asyncpg.InternalClientError("cannot switch to state 15"))


class _CutPool:
    """A pool whose every statement meets PostgreSQL stopping inside a commit."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: object, **kwargs: object) -> Any:
            raise asyncpg.InternalClientError("cannot switch to state 15")
        return fail


async def test_a_booking_whose_commit_is_cut_is_503_safe_to_send_again() -> None:
    token = new_token()
    application = Application(Settings(encryption_keys=TEST_KEYS),
                              pool=cast(asyncpg.Pool, _CutPool()))
    api = create_app(application, ApiSettings(tokens={Scope.SCHEDULER: [digest(token)]}),
                     deliver_kept_texts=False)
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/sessions", json=booking_data())
    assert response.status_code == 503, response.text
    assert response.json()["kind"] == "unavailable"
    assert "safe to send again" in response.json()["message"]
