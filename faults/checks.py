"""What became of each step a provider refused or hung on: the channel faults' own checks.

The counts (faults/count.py) say whether sessions ended right and nothing was lost or
doubled; a channel fault also has a contract to keep for the steps it struck (Contract A in
TEAM.md, the channels' docstring in missed_session/channels/base.py):

- a 4xx is `ChannelRejected`: never sent again, recorded as "rejected by the channel"
  (an emergency contact's message: escalation blocked, with an urgent task);
- a provider that took the request and never answers makes the step "delivery uncertain"
  within bounded time (the channel's read timeout): never sent again; an uncertain
  emergency contact's message comes with an urgent task, since a person must find out;
- a notice to a clinician that the provider held when the worker died is `notice_uncertain`
  (never `notice_failed`, never sent again), and its rung waits the policy's minutes and
  then climbs, within seconds of the worker's restart (issue 29 item 3).

Pure: the receiver's records and the trails in, problems and notes out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from faults.count import ESCALATION_KEY, STEP_KEY, NoticeRecord, SessionRecord
from faults.receiver import Delivery
from missed_session.domain.events import live
from missed_session.domain.models import AuditEvent, AuditEventType

REJECTED = "rejected by the channel"
"""The trail's reason for a step the provider refused (workflows/session.py)."""
UNCERTAIN = "delivery uncertain"
"""The trail's reason for a step that may have been delivered (activities/outreach.py)."""
HANG_BOUND_SECONDS = 60.0
"""How long a hung step may take to be recorded: the channel gives up after 10 s without
an answer; the rest is room for a loaded two-core machine."""
NOTICE_SEND_KEY = re.compile(
    r"^notice-(?P<notice>.+)/round-(?P<round>\d+)/step-(?P<step>\d+)/(?P<clinician>[^/]+)"
    r"/(?P<channel>[^/]+)$")
"""A notice send's idempotency key (`workflows/notice.py`): notice workflow id, rung, who,
how."""
CLIMB_SLACK_SECONDS = 30.0
"""How long after the worker's restart, beyond the rung's own wait, a struck rung may take
to climb: the heartbeat timeout (10 s) that tells Temporal the dead worker's send is gone,
the retry's 2 s, and room for a loaded two-core machine. Without the heartbeat the send
waits out its whole 2-minute start-to-close timeout (the issue saw 143-197 s)."""
EARLY_TOLERANCE_SECONDS = 0.5
"""A climb this much before the rung's wait is over is early (clock rounding only)."""
_NOTICE_SENDS = {AuditEventType.NOTICE_SENT, AuditEventType.NOTICE_FAILED,
                 AuditEventType.NOTICE_UNCERTAIN}
_CLIMBS = {AuditEventType.NOTICE_CLIMBED, AuditEventType.NOTICE_ESCALATED,  # its old name
           AuditEventType.NOTICE_EXHAUSTED}


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


def notice_in_flight_honoured(held: Delivery | None, deliveries: Sequence[Delivery],
                              notices: Sequence[NoticeRecord], *, restarted_at: float,
                              rung_seconds: float,
                              slack: float = CLIMB_SLACK_SECONDS) -> Findings:
    """The notice send held by the provider at the kill, and every notice of the run.

    The held send: requested once, recorded `notice_uncertain` (not sent, not failed), and
    its rung climbed (`notice_climbed`, or `notice_exhausted` at the top) no sooner than
    the rung's wait after that record (it may have reached the clinician, so the rung
    waits) and no later than `rung_seconds + slack` after the worker's restart. Every
    notice: no `notice_failed` (no provider refuses or fails in this scenario), its chain
    intact, its history replayed.
    """
    found = Findings()
    found.problems += [f"notice {record.key}: {problem}" for record in notices
                       for problem in record.problems]
    found.problems += [f"notice {record.key}: chain not intact" for record in notices
                       if not record.chain_ok and not record.problems]
    found.problems += [f"notice {record.key}: history does not replay" for record in notices
                       if not record.replay_ok and not record.problems]
    courses = {record.key: live(record.trail) for record in notices}
    for key, each in courses.items():
        found.problems += [f"notice {key}: notice_failed round {e.data.get('round')} step "
                           f"{e.data.get('step')} {e.data.get('channel')} "
                           f"({e.data.get('reason')})"
                           for e in each if e.event_type is AuditEventType.NOTICE_FAILED]
    found.problems += [f"notice send {key.removeprefix('notice-')} was sent {times} times"
                       for key, times in Counter(d.key for d in deliveries).items()
                       if times > 1 and key.startswith("notice-")]
    sends = Counter(e.event_type.value for each in courses.values() for e in each
                    if e.event_type in _NOTICE_SENDS)
    found.notes.append(f"{len(notices)} notices; sends recorded: {dict(sorted(sends.items()))}")
    if held is None:
        found.problems.append("no notice reached the provider: the fault never struck")
        return found
    parts = NOTICE_SEND_KEY.match(held.key)
    if parts is None:
        found.problems.append(f"the held request {held.key} is not a notice's send")
        return found
    notice = parts["notice"]
    send = f"notice {notice} round {parts['round']} step {parts['step']} {parts['channel']}"
    course = courses.get(notice)
    if course is None:
        found.problems.append(f"{send} was held at the kill; the notice has no trail")
        return found
    records = [e for e in course if e.event_type in _NOTICE_SENDS
               and e.data.get("round") == int(parts["round"])
               and e.data.get("step") == int(parts["step"])
               and e.data.get("clinician_id") == parts["clinician"]
               and e.data.get("channel") == parts["channel"]]
    if [e.event_type for e in records] != [AuditEventType.NOTICE_UNCERTAIN]:
        said = ", ".join(f"{e.event_type.value} ({e.data.get('reason', '')})" for e in records)
        found.problems.append(f"{send} was in the provider's hands at the kill; the trail "
                              f"says {said or 'nothing'}")
        return found
    uncertain = records[0]
    recorded_after = uncertain.occurred_at.timestamp() - restarted_at
    climb = next((e for e in course
                  if e.sequence > uncertain.sequence and e.event_type in _CLIMBS), None)
    if climb is None:
        after_it = [e.event_type.value for e in course if e.sequence > uncertain.sequence]
        found.problems.append(f"{send}: notice_uncertain, and the ladder never climbed after it "
                              f"(after it, its trail has: {', '.join(after_it) or 'nothing'})")
        return found
    waited = climb.occurred_at.timestamp() - uncertain.occurred_at.timestamp()
    after = climb.occurred_at.timestamp() - restarted_at
    if waited < rung_seconds - EARLY_TOLERANCE_SECONDS:
        found.problems.append(f"{send}: climbed {waited:.1f} s after notice_uncertain, before "
                              f"the rung's {rung_seconds:.0f} s (taken for a failed send)")
    elif after > rung_seconds + slack:
        found.problems.append(f"{send}: the rung climbed {after:.0f} s after the restart "
                              f"(bound {rung_seconds + slack:.0f} s: the rung stalled)")
    else:
        found.notes.append(
            f"{send} held at the kill, sent once: notice_uncertain {recorded_after:.1f} s "
            f"after the restart; {climb.event_type.value} {waited:.1f} s later "
            f"({after:.1f} s after the restart; the rung's wait {rung_seconds:.0f} s)")
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
