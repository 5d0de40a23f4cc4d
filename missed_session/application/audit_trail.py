"""Reading a session's audit trail (PostgreSQL only: it works while Temporal is down)."""

from __future__ import annotations

from typing import Any

from missed_session.application.results import Result, ResultKind
from missed_session.domain import events
from missed_session.domain.models import AuditEvent
from missed_session.store.audit import AuditStore


async def read_trail(store: AuditStore, session_id: str) -> Result:
    """The session's events in order; `not_found` when it has none."""
    trail = tuple(await store.trail(session_id))
    if not trail:
        return Result(ResultKind.NOT_FOUND, f"no audit events for session {session_id}",
                      session_id)
    return Result(ResultKind.APPLIED, f"{len(trail)} audit events for session {session_id}",
                  session_id, trail=trail)


def details(event: AuditEvent) -> dict[str, Any]:
    """The event's details as its model reads them, without the unset optional fields.

    A row that its model cannot read is shown as stored, flagged, rather than hidden.
    """
    try:
        return events.read(event).model_dump(mode="json", exclude_none=True)
    except events.UnreadableEventError as error:
        return {**event.data, "unreadable": str(error)}
