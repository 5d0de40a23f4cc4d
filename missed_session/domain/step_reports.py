"""What a step (an outreach activity, the emergency contact's call) reported, and its record.

The workflow's step runner (`workflows.steps`) turns an activity's result or failure into
one of these plain values; what the protocol records for an outreach step follows from the
report alone (`outreach_event`). Pure: no Temporal types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from missed_session.domain import events
from missed_session.domain.models import CallResult, Channel


@dataclass(frozen=True)
class Done:
    """The step ran; what the provider confirmed (calls, voicemail) and the consent used."""

    result: CallResult | None = None
    consent_record: str | None = None
    at: datetime | None = None
    """When the step went out, by the activity's clock (None: histories from before it)."""


@dataclass(frozen=True)
class Refused:
    """The client's consent history refused the step as of its moment: nothing was sent."""

    reason: str
    consent_record: str | None = None


@dataclass(frozen=True)
class Uncertain:
    """The step may have reached its recipient (never re-sent)."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """The step did not reach its recipient."""

    reason: str
    invalid_contact: bool = False


@dataclass(frozen=True)
class Stopped:
    """The step was cancelled in flight (contact, or a decision): it may have happened."""


StepReport = Done | Refused | Uncertain | Failed | Stopped


def outreach_event(  # noqa: PLR0911 - one record per report
    attempt: int, channel: Channel, report: StepReport, stop_reason: str,
) -> events.EventDetails:
    """The audit event an outreach step's report is recorded as."""
    match report:
        case Stopped():
            return events.OutreachUncertain(attempt=attempt, channel=channel,
                                            reason=f"stopped in flight: {stop_reason}")
        case Refused(reason=reason, consent_record=record):
            return events.OutreachSkipped(attempt=attempt, channel=channel, reason=reason,
                                          consent_record=record)
        case Uncertain(reason=reason):
            return events.OutreachUncertain(attempt=attempt, channel=channel, reason=reason)
        case Failed(reason=reason):
            return events.OutreachFailed(attempt=attempt, channel=channel, reason=reason)
        case Done(result=result, consent_record=record):
            if channel is Channel.CALL and result is not None:
                return events.OutreachAttempted(attempt=attempt, result=result,
                                                consent_record=record)
            if channel is Channel.VOICEMAIL and result is not CallResult.ANSWERED:
                # The provider says it was not recorded.
                return events.OutreachFailed(attempt=attempt, channel=channel,
                                             reason="voicemail not delivered",
                                             consent_record=record)
            if channel is Channel.VOICEMAIL:
                return events.VoicemailLeft(attempt=attempt, consent_record=record)
            return events.MessageSent(attempt=attempt, channel=channel, consent_record=record)
    raise AssertionError(report)  # pragma: no cover - every report is matched above


def went_out(event: events.EventDetails) -> bool:
    """Whether a step recorded as `event` went out (or may have)."""
    return not isinstance(event, events.OutreachSkipped | events.OutreachFailed)


def went_out_at(report: StepReport) -> datetime | None:
    """When the step's activity says it went out: the time its trail event records.

    None (the workflow's own time, as before) for a step that did not report one: refused,
    failed, stopped, or an activity result recorded before steps reported their time.
    """
    return report.at if isinstance(report, Done) else None
