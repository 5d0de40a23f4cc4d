"""What a fault did to the sessions, counted from the channel's own records and the trails.

Pure: the harness gathers, per session, what Temporal, PostgreSQL and the channel recorded;
these functions only count. A session is correct when its workflow completed with the
scripted client's outcome and its `closed` row says the same.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from missed_session.domain.events import live
from missed_session.domain.models import AuditEvent, AuditEventType, Outcome

STEP_KEY = re.compile(r"/attempt-(\d+)/(call|voicemail|text|email)$")
"""The idempotency key of a ladder step ends with its attempt and channel."""
ESCALATION_KEY = re.compile(r"/escalation$")
REPEATABLE = {AuditEventType.CLINICIAN_DECISION, AuditEventType.OUTREACH_DEFERRED,
              AuditEventType.RESCHEDULED}
"""Events a trail may legitimately hold more than once with the same details."""
_UNSURE = {AuditEventType.OUTREACH_FAILED, AuditEventType.OUTREACH_UNCERTAIN}
"""A step that failed, or may have reached the person (recorded as such, never re-sent)."""
STEP_EVENTS: dict[str, set[AuditEventType]] = {
    "call": {AuditEventType.OUTREACH_ATTEMPTED, *_UNSURE},
    "voicemail": {AuditEventType.VOICEMAIL_LEFT, *_UNSURE},
    "text": {AuditEventType.MESSAGE_SENT, *_UNSURE},
    "email": {AuditEventType.MESSAGE_SENT, *_UNSURE},
}
"""Channel of a delivered step -> the audit events that document it."""


@dataclass(frozen=True)
class Effect:
    """One thing the channel did for a session (a call placed, a voicemail left, ...)."""

    key: str
    """The step's idempotency key, as the channel received it."""
    kind: str
    """call, voicemail, message (the emergency contact), text or email."""


@dataclass(frozen=True)
class SessionRecord:
    """Everything recorded about one session at the end of a scenario."""

    session_id: str
    expected: Outcome
    status: str
    """The workflow's status in Temporal: COMPLETED, FAILED, RUNNING, ..."""
    outcome: Outcome | None
    """The workflow's result, if it completed."""
    trail: Sequence[AuditEvent]
    effects: Sequence[Effect]
    chain_ok: bool
    replay_ok: bool
    problems: Sequence[str] = ()
    """What the chain verification or the replay said when it failed."""


@dataclass(frozen=True)
class NoticeRecord:
    """One notice to clinicians at the end of a scenario with a roster (its own trail)."""

    key: str
    """The notice key, `<session id>/<name>`: its trail's stream id."""
    trail: Sequence[AuditEvent]
    chain_ok: bool
    replay_ok: bool
    """The notice workflow's history replays with today's code and matches its trail."""
    problems: Sequence[str] = ()
    """What the chain verification or the replay said when it failed."""


@dataclass
class Counts:
    """One row of the fault table."""

    sessions: int = 0
    correct: int = 0
    failed: int = 0
    """Workflows that failed (or were terminated or timed out)."""
    still_open: int = 0
    """Workflows still running when the scenario's time was up."""
    duplicate_effects: int = 0
    """Extra deliveries of a step the channel had already received."""
    lost_events: int = 0
    """Sequence gaps, missing `closed` rows, and effects no audit event documents."""
    duplicate_events: int = 0
    """The same event twice in one trail."""
    failed_steps: int = 0
    """Informative, not part of the bar: `outreach_failed` rows and escalations blocked
    because the contact was unreachable. No scripted client has an invalid number or a
    refusing provider, so each was made by the fault: an outage counted against the client,
    or a step left uncertain by a dead worker (which may be the honest record)."""
    superseded: int = 0
    """Informative, not part of the bar: rows a workflow task wrote before it failed, whose
    retry took another course (marked by a `trail_superseded` row, kept in the chain)."""
    chains_ok: int = 0
    replays_ok: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every session correct, nothing failed, lost, duplicated, broken."""
        return (self.correct == self.sessions and self.failed == 0 and self.still_open == 0
                and self.duplicate_effects == 0 and self.lost_events == 0
                and self.duplicate_events == 0 and self.chains_ok == self.sessions
                and self.replays_ok == self.sessions)


def count(records: Iterable[SessionRecord]) -> Counts:
    """Add up every session's findings; `problems` names the session of each."""
    counts = Counts()
    for record in records:
        counts.sessions += 1
        # The session's course: rows a failed workflow task left are kept in the trail
        # (and its chain) but marked superseded; only gaps are counted on every row.
        course = live(record.trail)
        superseded = len(record.trail) - len(course)
        counts.superseded += superseded
        closed = [e for e in course if e.event_type is AuditEventType.CLOSED]
        closed_outcome = closed[-1].data.get("outcome") if closed else None
        if (record.status == "COMPLETED" and record.outcome is record.expected
                and closed_outcome == record.expected.value):
            counts.correct += 1
        elif record.status == "COMPLETED":
            counts.problems.append(f"{record.session_id}: outcome {record.outcome} "
                                   f"(closed row: {closed_outcome}), expected "
                                   f"{record.expected.value}")
        if record.status in {"FAILED", "TERMINATED", "TIMED_OUT", "CANCELED"}:
            counts.failed += 1
            counts.problems.append(f"{record.session_id}: workflow {record.status}")
        elif record.status == "RUNNING":
            counts.still_open += 1
            counts.problems.append(f"{record.session_id}: still running")
        duplicates = duplicate_effects(record.effects)
        counts.duplicate_effects += duplicates
        if duplicates:
            counts.problems.append(f"{record.session_id}: {duplicates} duplicate deliveries")
        lost = lost_events(record.trail, record.effects, course)
        counts.lost_events += len(lost)
        counts.problems += [f"{record.session_id}: {problem}" for problem in lost]
        failed_steps = [
            event for event in course
            if event.event_type is AuditEventType.OUTREACH_FAILED
            or (event.event_type is AuditEventType.ESCALATION_BLOCKED
                and "unreachable" in str(event.data.get("reason", "")))
        ]
        counts.failed_steps += len(failed_steps)
        counts.problems += [
            f"{record.session_id}: step failed: {e.event_type.value} attempt "
            f"{e.data.get('attempt')} {e.data.get('channel') or ''} ({e.data.get('reason')})"
            for e in failed_steps
        ]
        twice = duplicate_events(course)
        counts.duplicate_events += len(twice)
        counts.problems += [f"{record.session_id}: twice in the trail: {e}" for e in twice]
        counts.chains_ok += record.chain_ok
        counts.replays_ok += record.replay_ok
        counts.problems += [f"{record.session_id}: {problem}" for problem in record.problems]
    return counts


def duplicate_effects(effects: Iterable[Effect]) -> int:
    """Deliveries beyond the first of each step (same key)."""
    return sum(times - 1 for times in Counter(effect.key for effect in effects).values())


def lost_events(trail: Sequence[AuditEvent], effects: Iterable[Effect],
                course: Sequence[AuditEvent] | None = None) -> list[str]:
    """Gaps in the sequence, a missing `closed`, and effects without their audit event.

    Gaps over every row; the rest over the session's `course` (default: `live(trail)`).
    """
    if course is None:
        course = live(trail)
    lost: list[str] = []
    sequences = sorted({event.sequence for event in trail})
    if sequences:
        missing = sorted(set(range(1, sequences[-1] + 1)) - set(sequences))
        lost += [f"sequence {number} missing" for number in missing]
    if not any(event.event_type is AuditEventType.CLOSED for event in course):
        lost.append("no closed event")
    for effect in {effect.key: effect for effect in effects}.values():
        if not documented(effect, course):
            lost.append(f"the channel delivered {effect.kind} {_step(effect.key)} but the "
                        "trail does not record it")
    return lost


def documented(effect: Effect, trail: Sequence[AuditEvent]) -> bool:
    """Whether an audit event records this step's outcome (sent, failed, blocked)."""
    step = STEP_KEY.search(effect.key)
    if step is not None:
        attempt, channel = int(step.group(1)), step.group(2)
        return any(
            event.event_type in STEP_EVENTS[channel]
            and event.data.get("attempt") == attempt
            and (event.event_type not in {*_UNSURE, AuditEventType.MESSAGE_SENT}
                 or event.data.get("channel") == channel)
            for event in trail
        )
    if ESCALATION_KEY.search(effect.key):
        return any(event.event_type in {AuditEventType.ESCALATION_SENT,
                                        AuditEventType.ESCALATION_BLOCKED,
                                        AuditEventType.ESCALATION_UNCERTAIN}
                   for event in trail)
    return True  # not a step this harness knows how to match: not counted either way


def duplicate_events(trail: Sequence[AuditEvent]) -> list[str]:
    """Events that occur twice with the same identity (type, attempt, channel, notice)."""
    identities = Counter(
        (event.event_type.value, event.data.get("attempt"), event.data.get("channel"),
         event.data.get("notice"))
        for event in trail if event.event_type not in REPEATABLE
    )
    return [_identity(identity) for identity, times in identities.items() if times > 1]


def _identity(identity: tuple[object, ...]) -> str:
    event_type, attempt, channel, _ = identity
    details = [f"attempt {attempt}" if attempt is not None else "",
               str(channel) if channel is not None else ""]
    return " ".join([str(event_type), *filter(None, details)])


def _step(key: str) -> str:
    return key.rsplit("/", 2)[-2] + "/" + key.rsplit("/", 1)[-1] if "/" in key else key
