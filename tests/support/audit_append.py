"""Helpers first written for tests/test_audit_append.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from missed_session.domain.models import AuditEvent, AuditEventType

START = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)


def event(session_id: str, sequence: int,
          event_type: AuditEventType = AuditEventType.VOICEMAIL_LEFT,
          **data: str | int | bool | None) -> AuditEvent:
    return AuditEvent(session_id=session_id, sequence=sequence, event_type=event_type,
                      occurred_at=START + timedelta(minutes=sequence), data=data)


def trail(session_id: str, length: int) -> list[AuditEvent]:
    """A trail that changes the projections: scheduled, rescheduled (3 and 6), a plan (5)."""
    events = [event(session_id, 1, AuditEventType.SCHEDULED, client_ref="c-1",
                    therapist_id="t-ana", start=START.isoformat())]
    for sequence in range(2, length + 1):
        if sequence in (3, 6):
            events.append(event(session_id, sequence, AuditEventType.RESCHEDULED,
                                start=(START + timedelta(days=sequence)).isoformat()))
        elif sequence == 5:
            events.append(event(session_id, sequence, AuditEventType.PLAN_CREATED,
                                tasks="safety_check,discuss_at_next_session", concerns=""))
        else:
            events.append(event(session_id, sequence, attempt=sequence, channel="call"))
    return events

