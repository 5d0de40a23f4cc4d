"""Activities that write the audit history."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from missed_session.domain import events
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    AwareDatetime,
    Model,
    Outcome,
)
from missed_session.metrics import ServiceMetrics, is_first_outreach
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

    def __init__(self, store: AuditStore, metrics: ServiceMetrics) -> None:
        self._store = store
        self._metrics = metrics

    @activity.defn
    async def record_event(self, event: AuditEvent) -> AuditEvent:
        """Append one event to the session's trail, and count it once it is new.

        Returns the event: the workflow runs this as a local activity, whose input the
        history does not keep, so the result is what `audit replay` checks the row against.
        """
        details = _readable(event)
        try:
            written = await self._store.append(event)
        except AuditConflictError as error:
            raise ApplicationError(str(error), type="AuditConflict", non_retryable=True) from None
        if written:
            await self._observe(event, details)
        return event

    @activity.defn
    async def record_closing(self, record: ClosingRecord) -> AuditEvent:
        """Append the `closed` event and the attendance row in one transaction.

        Returns the event, as `record_event` does.
        """
        details = _readable(record.event)
        try:
            written = await self._store.append_closing(
                record.event,
                client_ref=record.client_ref,
                therapist_id=record.therapist_id,
                start=record.start,
                outcome=record.outcome,
            )
        except AuditConflictError as error:
            raise ApplicationError(str(error), type="AuditConflict", non_retryable=True) from None
        if written:
            await self._observe(record.event, details)
        return record.event

    async def _observe(self, event: AuditEvent, details: events.EventDetails) -> None:
        self._metrics.observe(details)
        if is_first_outreach(details):
            trail = await self._store.trail(event.session_id)
            expired = next(
                (e for e in trail if e.event_type is AuditEventType.GRACE_PERIOD_EXPIRED), None
            )
            if expired is not None:
                self._metrics.first_outreach(event.occurred_at - expired.occurred_at)


def _readable(event: AuditEvent) -> events.EventDetails:
    """The event's typed details; a row its own model cannot read is never written.

    Not retried: the same event would fail the same way, and only a code defect produces it.
    """
    try:
        return events.read(event)
    except events.UnreadableEventError as error:
        raise ApplicationError(str(error), type="UnreadableEvent", non_retryable=True) from None
