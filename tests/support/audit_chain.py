"""Helpers first written for tests/test_audit_chain.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from missed_session.domain.models import AuditEvent, AuditEventType, Outcome
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore

START = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)


TRAIL: list[tuple[AuditEventType, dict[str, str | int | bool | None]]] = [
    (AuditEventType.SCHEDULED, {"client_ref": "c-1", "risk_tier": "standard"}),
    (AuditEventType.GRACE_PERIOD_EXPIRED, {"grace_period_minutes": 15}),
    (AuditEventType.THERAPIST_ALERTED, {"notice": "s-1/no-show-alert"}),
    (AuditEventType.OUTREACH_ATTEMPTED, {"attempt": 1, "channel": "call", "result": "no_answer"}),
    (AuditEventType.VOICEMAIL_LEFT, {"attempt": 1}),
]


def event(session_id: str, sequence: int) -> AuditEvent:
    event_type, data = TRAIL[sequence - 1]
    return AuditEvent(session_id=session_id, sequence=sequence, event_type=event_type,
                      occurred_at=START + timedelta(minutes=sequence), data=data)


async def record_trail(store: AuditStore, session_id: str = "s-1", *,
                       close: bool = False) -> None:
    for sequence in range(1, len(TRAIL) + 1):
        assert (await store.record([event(session_id, sequence)])).new
    if close:
        closed = AuditEvent(session_id=session_id, sequence=len(TRAIL) + 1,
                            event_type=AuditEventType.CLOSED,
                            occurred_at=START + timedelta(hours=1),
                            data={"outcome": "reached", "attempts": 1})
        assert (await store.record([closed], attendance=Attendance(
            client_ref="c-1", therapist_id="t-ana", start=START, outcome=Outcome.REACHED))).new

