"""Activities that write the audit history."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from missed_session.domain.models import AuditEvent, AwareDatetime, Model, Outcome
from missed_session.store.audit import AuditConflictError, AuditStore


class ClosingRecord(Model):
    """The `closed` event and the attendance row it implies, written together."""

    event: AuditEvent
    """The `closed` audit event."""
    client_ref: str
    """Pseudonymous client id for the attendance record."""
    therapist_id: str
    """Whose session it was."""
    start: AwareDatetime
    """Start of the session, as finally scheduled."""
    outcome: Outcome
    """How the session closed."""


class AuditActivities:
    """Append audit events; retried until PostgreSQL takes them, never written twice."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    @activity.defn
    async def record_event(self, event: AuditEvent) -> None:
        """Append one event to the session's trail."""
        try:
            await self._store.append(event)
        except AuditConflictError as error:
            raise ApplicationError(str(error), type="AuditConflict", non_retryable=True) from None

    @activity.defn
    async def record_closing(self, record: ClosingRecord) -> None:
        """Append the `closed` event and the attendance row in one transaction."""
        try:
            await self._store.append_closing(
                record.event,
                client_ref=record.client_ref,
                therapist_id=record.therapist_id,
                start=record.start,
                outcome=record.outcome,
            )
        except AuditConflictError as error:
            raise ApplicationError(str(error), type="AuditConflict", non_retryable=True) from None
