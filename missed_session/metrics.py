"""The service's own metrics, read off the audit events as they are written.

Every protocol step already produces an audit event, so counting events as they land in
PostgreSQL gives the metrics for free and keeps them consistent with the record: an event
retried by Temporal but already written is not counted twice. They are exported through the
Temporal runtime's Prometheus endpoint, beside the SDK's own metrics.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import MetricMeter

from missed_session.domain import events

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
            "Delay from grace-period expiry to the first outreach attempt going out",
            "ms",
        )
        self._notices_exhausted = meter.create_counter(
            PREFIX + "notices_exhausted",
            "Notices to clinicians that ran out of escalation steps unacknowledged",
        )
        self._notice_ack_delay = meter.create_histogram_timedelta(
            PREFIX + "notice_acknowledgment_delay",
            "Time from a notice's opening to a clinician's acknowledgment",
            "ms",
        )

    def observe(self, details: events.EventDetails) -> None:
        """Count one newly written audit event."""
        match details:
            case events.Closed(outcome=outcome):
                self._closed.add(1, {"outcome": outcome.value})
            case events.GracePeriodExpired():
                self._no_shows.add(1)
            case events.OutreachAttempted(channel=channel, result=result):
                self._attempts.add(1, {"channel": channel.value, "result": result.value})
            case events.VoicemailLeft():
                self._attempts.add(1, {"channel": "voicemail", "result": "left"})
            case events.OutreachFailed(channel=channel):
                self._attempts.add(1, {"channel": channel.value, "result": "failed"})
            case events.EscalationSent():
                self._escalations.add(1, {"result": "sent"})
            case events.EscalationBlocked():
                self._escalations.add(1, {"result": "blocked"})
            case events.NoticeExhausted(policy=policy):
                self._notices_exhausted.add(1, {"policy": policy})
            case events.NoticeAcknowledged(seconds_to_acknowledge=seconds, via=via):
                self._notice_ack_delay.record(timedelta(seconds=seconds), {"via": via})
            case _:
                pass

    def first_outreach(self, delay: timedelta) -> None:
        """Record how long the client waited for the first attempt after the no-show.

        `delay` is what the client experiences because the trail dates both ends when they
        happened: `grace_period_expired` at the grace period's deadline, the first step at
        the start of the activity's try that went out (`StepOutcome.at`), not when a
        workflow task next recorded them (seconds later under load; issue 28 saw 39 s
        reported for calls that went out within 1.5 s). `python -m bench` sets it beside
        the phone's own record of the calls (scenario 3).
        """
        self._first_outreach_delay.record(max(delay, timedelta(0)))


def is_first_outreach(details: events.EventDetails) -> bool:
    """The event that ends the wait the delay histogram measures."""
    return (isinstance(details, events.OutreachAttempted | events.OutreachFailed)
            and details.attempt == 1)
