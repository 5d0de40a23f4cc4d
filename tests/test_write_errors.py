"""A write that fails because of what it carries is told apart from a passing failure."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.store.audit import AuditParentMissingError, AuditStore
from missed_session.store.write_errors import is_deterministic

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


async def test_a_nul_in_audit_data_fails_the_same_way_every_time(pool: asyncpg.Pool) -> None:
    """What used to make the audit activity retry forever (a NUL in a clinician's note)."""
    store = AuditStore(pool)
    event = AuditEvent(session_id="s-1", sequence=1, event_type=AuditEventType.SCHEDULED,
                       occurred_at=AT, data={"note": "a\x00b"})
    errors = []
    for _ in range(2):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await store.append(event)
        errors.append(caught.value)
    assert all(is_deterministic(error) for error in errors)
    assert type(errors[0]) is type(errors[1])
    assert await store.trail("s-1") == []


async def test_a_missing_parent_and_a_lost_connection_are_passing(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    with pytest.raises(AuditParentMissingError) as caught:
        await store.append(AuditEvent(session_id="s-2", sequence=2,
                                      event_type=AuditEventType.CHECKED_IN, occurred_at=AT))
    assert not is_deterministic(caught.value)
    assert not is_deterministic(ConnectionResetError())
    assert not is_deterministic(TimeoutError())
    assert not is_deterministic(asyncpg.DeadlockDetectedError("deadlock"))
    assert not is_deterministic(asyncpg.CannotConnectNowError("starting up"))
