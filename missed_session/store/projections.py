"""Projections of the audit trail: attendance and open therapist tasks.

`apply` folds one event into the projection tables; the store calls it in the transaction
that appends the event, so the projections never disagree with the trail. `rebuild` empties
them and folds every event again, in order: the result must equal the incremental one
(`tests/test_audit_projections.py` checks it after a mixed day).
"""

from __future__ import annotations

import json
from datetime import datetime

from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.store.database import Connection

URGENT_TASKS = frozenset({"safety_check"})
"""Plan tasks that are urgent; the rest are routine."""


async def apply(connection: Connection, event: AuditEvent) -> None:
    """Fold one newly appended event into the projections."""
    data = event.data
    kind = event.event_type
    if kind is AuditEventType.SCHEDULED:
        await connection.execute(
            "INSERT INTO projection_attendance (session_id, client_ref, therapist_id, start_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
            event.session_id, str(data.get("client_ref", "")),
            str(data.get("therapist_id", "")), _time(data.get("start"), event.occurred_at),
        )
    elif kind is AuditEventType.RESCHEDULED:
        await connection.execute(
            "UPDATE projection_attendance SET start_at = $2 WHERE session_id = $1",
            event.session_id, _time(data.get("start"), event.occurred_at),
        )
    elif kind is AuditEventType.CLOSED:
        await connection.execute(
            "UPDATE projection_attendance SET outcome = $2, closed_at = $3"
            " WHERE session_id = $1",
            event.session_id, str(data.get("outcome", "")), event.occurred_at,
        )
    elif kind is AuditEventType.ESCALATION_BLOCKED:
        key = str(data.get("task") or f"{event.session_id}/escalation-blocked")
        await _task(connection, event, key, "decide_after_blocked_escalation", "urgent")
    elif kind is AuditEventType.PLAN_CREATED:
        for name in [name for name in str(data.get("tasks") or "").split(",") if name]:
            priority = "urgent" if name in URGENT_TASKS else "routine"
            await _task(connection, event, f"{event.session_id}/task/{name}", name, priority)


async def _task(connection: Connection, event: AuditEvent, key: str, kind: str,
                priority: str) -> None:
    await connection.execute(
        "INSERT INTO projection_open_tasks (key, session_id, therapist_id, kind, priority,"
        " created_at) SELECT $1, $2, coalesce((SELECT therapist_id FROM projection_attendance"
        " WHERE session_id = $2), ''), $3, $4, $5 ON CONFLICT (key) DO NOTHING",
        key, event.session_id, kind, priority, event.occurred_at,
    )


def _time(value: object, default: datetime) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else default


async def rebuild(connection: Connection) -> int:
    """Empty the projections and fold every event again, in one transaction; events read."""
    async with connection.transaction():
        await connection.execute("LOCK TABLE audit_events IN SHARE MODE")
        await connection.execute("DELETE FROM projection_open_tasks")
        await connection.execute("DELETE FROM projection_attendance")
        rows = await connection.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
            " ORDER BY session_id, sequence"
        )
        for row in rows:
            try:
                event_type = AuditEventType(row["event_type"])
            except ValueError:
                continue  # a type this version does not know projects nothing
            await apply(connection, AuditEvent(
                session_id=row["session_id"], sequence=row["sequence"], event_type=event_type,
                occurred_at=row["occurred_at"], data=json.loads(row["data"]),
            ))
    return len(rows)
