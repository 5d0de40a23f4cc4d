"""What became of each step a provider refused or hung on: the channel faults' own checks.

The counts (faults/count.py) say whether sessions ended right and nothing was lost or
doubled; a channel fault also has a contract to keep for the steps it struck (Contract A in
TEAM.md, the channels' docstring in missed_session/channels/base.py):

- a 4xx is `ChannelRejected`: never sent again, recorded as "rejected by the channel"
  (an emergency contact's message: escalation blocked, with an urgent task);
- a provider that took the request and never answers makes the step "delivery uncertain"
  within bounded time (the channel's read timeout): never sent again; an uncertain
  emergency contact's message comes with an urgent task, since a person must find out.

Pure: the receiver's records and the trails in, problems and notes out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from faults.count import ESCALATION_KEY, STEP_KEY, SessionRecord
from faults.receiver import Delivery
from missed_session.domain.models import AuditEvent, AuditEventType

REJECTED = "rejected by the channel"
"""The trail's reason for a step the provider refused (workflows/session.py)."""
UNCERTAIN = "delivery uncertain"
"""The trail's reason for a step that may have been delivered (activities/outreach.py)."""
HANG_BOUND_SECONDS = 60.0
"""How long a hung step may take to be recorded: the channel gives up after 10 s without
an answer; the rest is room for a loaded two-core machine."""


@dataclass
class Findings:
    """What a scenario's own check found."""

    problems: list[str] = field(default_factory=list)
    """Each one misses the bar."""
    notes: list[str] = field(default_factory=list)
    """What was seen, for the report."""


def refusals_honoured(rejections: Sequence[Delivery],
                      records: Sequence[SessionRecord]) -> Findings:
    """Every refused step was sent once and recorded as rejected by the channel."""
    found = Findings()
    if not rejections:
        found.problems.append("the provider refused nothing: the fault never struck")
    found.problems += _sent_again(rejections, "refused")
    trails = {record.session_id: record.trail for record in records}
    for delivery in _first_of_each(rejections):
        event = _recorded(delivery.key, trails.get(delivery.session_id, ()))
        step = f"{delivery.session_id}: {_step(delivery.key)}"
        if event is None:
            found.problems.append(f"{step} was refused; the trail does not record it")
            continue
        reason = str(event.data.get("reason", ""))
        if REJECTED not in reason or event.event_type not in {
                AuditEventType.OUTREACH_FAILED, AuditEventType.ESCALATION_BLOCKED}:
            found.problems.append(f"{step} was refused; the trail says {event.event_type.value}"
                                  f" ({reason})")
        elif event.event_type is AuditEventType.ESCALATION_BLOCKED and not event.data.get(
                "task"):
            found.problems.append(f"{step}: escalation blocked with no task for a person")
        else:
            found.notes.append(f"{step} refused once: {event.event_type.value} ({reason})")
    return found


def hangs_ended(hung: Sequence[Delivery], records: Sequence[SessionRecord], *,
                bound: float = HANG_BOUND_SECONDS) -> Findings:
    """Every hung step was sent once and recorded as uncertain within `bound` seconds."""
    found = Findings()
    if not hung:
        found.problems.append("the provider hung on nothing: the fault never struck")
    found.problems += _sent_again(hung, "left unanswered")
    trails = {record.session_id: record.trail for record in records}
    for delivery in _first_of_each(hung):
        event = _recorded(delivery.key, trails.get(delivery.session_id, ()))
        step = f"{delivery.session_id}: {_step(delivery.key)}"
        if event is None:
            found.problems.append(f"{step} hung; the trail does not record it")
            continue
        took = event.occurred_at.timestamp() - delivery.at
        reason = str(event.data.get("reason", ""))
        if event.event_type not in {AuditEventType.OUTREACH_UNCERTAIN,
                                    AuditEventType.ESCALATION_UNCERTAIN} or reason != UNCERTAIN:
            found.problems.append(f"{step} hung (the provider may have acted); the trail says "
                                  f"{event.event_type.value} ({reason})")
        elif took > bound:
            found.problems.append(f"{step} hung; recorded uncertain only after {took:.0f} s")
        elif event.event_type is AuditEventType.ESCALATION_UNCERTAIN and not event.data.get(
                "task"):
            found.problems.append(f"{step}: uncertain escalation with no task for a person")
        else:
            found.notes.append(f"{step} hung: {event.event_type.value} after {took:.0f} s")
    return found


def _sent_again(requests: Sequence[Delivery], what: str) -> list[str]:
    return [f"{_step(key)} was {what} and sent again ({times} requests)"
            for key, times in Counter(request.key for request in requests).items()
            if times > 1]


def _first_of_each(requests: Sequence[Delivery]) -> list[Delivery]:
    first: dict[str, Delivery] = {}
    for request in requests:
        first.setdefault(request.key, request)
    return list(first.values())


def _recorded(key: str, trail: Sequence[AuditEvent]) -> AuditEvent | None:
    """The event that says what came of the step with idempotency key `key`."""
    step = STEP_KEY.search(key)
    if step is not None:
        attempt, channel = int(step.group(1)), step.group(2)
        return next((event for event in trail
                     if event.data.get("attempt") == attempt
                     and event.event_type in {AuditEventType.OUTREACH_FAILED,
                                              AuditEventType.OUTREACH_UNCERTAIN}
                     and event.data.get("channel") == channel), None)
    if ESCALATION_KEY.search(key):
        return next((event for event in trail if event.event_type in {
            AuditEventType.ESCALATION_SENT, AuditEventType.ESCALATION_BLOCKED,
            AuditEventType.ESCALATION_UNCERTAIN}), None)
    return None


def _step(key: str) -> str:
    return key.split("/", 1)[1] if "/" in key else key
