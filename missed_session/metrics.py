"""The service's own metrics, read off the audit events as they are written.

Every protocol step already produces an audit event, so counting events as they land in
PostgreSQL gives the metrics for free and keeps them consistent with the record: an event
retried by Temporal but already written is not counted twice. They are exported through the
Temporal runtime's Prometheus endpoint, beside the SDK's own metrics.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import MetricMeter

from missed_session.domain.models import AuditEvent, AuditEventType

PREFIX = "missed_session_"


class ServiceMetrics:
    """Counters and one histogram, keyed by what supervisors ask about."""

    def __init__(self, meter: MetricMeter) -> None:
        self._closed = meter.create_counter(
            PREFIX + "sessions_closed", "Sessions closed, by outcome"
        )
        self._no_shows = meter.create_counter(
            PREFIX + "no_shows", "Sessions whose grace period expired without a check-in"
        )
        self._attempts = meter.create_counter(
            PREFIX + "outreach_attempts", "Outreach steps, by channel and result"
        )
        self._escalations = meter.create_counter(
            PREFIX + "escalations", "Escalations to the emergency contact, sent or blocked"
        )
        self._first_outreach_delay = meter.create_histogram_timedelta(
            PREFIX + "first_outreach_delay",
            "Delay from grace-period expiry to the first outreach attempt",
            "ms",
        )

    def observe(self, event: AuditEvent) -> None:
        """Count one newly written audit event."""
        data = event.data
        match event.event_type:
            case AuditEventType.CLOSED:
                self._closed.add(1, {"outcome": str(data.get("outcome"))})
            case AuditEventType.GRACE_PERIOD_EXPIRED:
                self._no_shows.add(1)
            case AuditEventType.OUTREACH_ATTEMPTED:
                self._attempts.add(
                    1, {"channel": str(data.get("channel")), "result": str(data.get("result"))}
                )
            case AuditEventType.VOICEMAIL_LEFT:
                self._attempts.add(1, {"channel": "voicemail", "result": "left"})
            case AuditEventType.OUTREACH_FAILED:
                self._attempts.add(1, {"channel": str(data.get("channel")), "result": "failed"})
            case AuditEventType.ESCALATION_SENT:
                self._escalations.add(1, {"result": "sent"})
            case AuditEventType.ESCALATION_BLOCKED:
                self._escalations.add(1, {"result": "blocked"})
            case _:
                pass

    def first_outreach(self, delay: timedelta) -> None:
        """Record how long the client waited for the first attempt after the no-show."""
        self._first_outreach_delay.record(max(delay, timedelta(0)))


def is_first_outreach(event: AuditEvent) -> bool:
    """The event that ends the wait the delay histogram measures."""
    return (
        event.event_type in {AuditEventType.OUTREACH_ATTEMPTED, AuditEventType.OUTREACH_FAILED}
        and event.data.get("attempt") == 1
    )
