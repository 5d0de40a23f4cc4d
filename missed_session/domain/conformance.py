"""Protocol packs: which rules of a published standard a session's trail shows were met.

A practice says which standard its missed-session protocol follows; a reviewer asks, for one
session, "did we do what it requires?". The answer is read from the session's live audit
trail alone (pure: no clock, no I/O), rule by rule, each with the trail rows it rests on, so
the verdict can be checked by hand against `starter.py audit <session>`.

The packs encode each standard's rules as they bear on one missed session; what a standard
asks of a service as a whole (local policies, staffing, data collection) is not a property
of one trail and is not judged here. Sources are in docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from missed_session.domain import events
from missed_session.domain.models import AuditEvent, Channel, LetterKind, Outcome, RiskTier


class Verdict(StrEnum):
    """A rule's answer for one session."""

    MET = "met"
    NOT_MET = "not_met"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class Finding:
    """One rule's verdict for one session, with the rows it rests on."""

    rule: str
    """The rule's id within its pack."""
    text: str
    """The rule in words."""
    verdict: Verdict
    """Met, not met, or not applicable to this session."""
    why: str
    """One line a reviewer can check against the trail."""
    evidence: tuple[int, ...] = ()
    """The trail rows (sequence numbers) the verdict rests on."""


@dataclass(frozen=True)
class Attempt:
    """One outreach attempt as the trail documents it (any step that ran)."""

    number: int
    """The protocol's attempt number."""
    first_at: datetime
    """When its first documented step happened."""
    rows: tuple[int, ...]
    """Its documented steps' rows."""
    calls: tuple[int, ...]
    """The rows of its calls that were placed."""


@dataclass(frozen=True)
class Episode:
    """What the trail says about one missed session, as the packs need it."""

    risk_tier: RiskTier | None
    no_show_at: datetime | None
    no_show_row: int | None
    attempts: tuple[Attempt, ...]
    reached_at: datetime | None
    reached_row: int | None
    plan_row: int | None
    outcome: Outcome | None
    closed_row: int | None
    letters: tuple[tuple[LetterKind, int], ...] = ()
    """Letters prepared: their kind and row, in order."""
    joined: tuple[str, int] | None = None
    """The session whose outreach this one joined, and the `joined_outreach` row: one
    ladder for one person, so the attempts are documented in that session's trail."""


_STEPS = (events.OutreachAttempted, events.VoicemailLeft, events.MessageSent,
          events.OutreachFailed, events.OutreachUncertain)
"""Steps that were tried (a skipped step documents a reason, not an attempt)."""


def episode(trail: Sequence[AuditEvent]) -> Episode:
    """The facts of the session's live trail that the packs judge."""
    risk: RiskTier | None = None
    no_show: AuditEvent | None = None
    reached: AuditEvent | None = None
    plan: AuditEvent | None = None
    closed: tuple[Outcome, int] | None = None
    letters: list[tuple[LetterKind, int]] = []
    joined: tuple[str, int] | None = None
    steps: dict[int, list[tuple[AuditEvent, bool]]] = {}
    for event in events.live(trail):
        details = events.read(event)
        if isinstance(details, events.Scheduled):
            risk = details.risk_tier
        elif isinstance(details, events.GracePeriodExpired):
            no_show = no_show or event
        elif isinstance(details, _STEPS):
            call = isinstance(details, events.OutreachAttempted) or (
                isinstance(details, events.OutreachFailed | events.OutreachUncertain)
                and details.channel is Channel.CALL)
            steps.setdefault(details.attempt, []).append((event, call))
        elif isinstance(details, events.ClientResponded | events.CheckedIn):
            reached = reached or event
        elif isinstance(details, events.LetterPrepared):
            letters.append((details.kind, event.sequence))
        elif isinstance(details, events.PlanCreated):
            plan = event
        elif isinstance(details, events.Closed):
            closed = (details.outcome, event.sequence)
        elif isinstance(details, events.JoinedOutreach):
            joined = (details.leader, event.sequence)
    attempts = tuple(
        Attempt(number, min(e.occurred_at for e, _ in rows),
                tuple(e.sequence for e, _ in rows), tuple(e.sequence for e, c in rows if c))
        for number, rows in sorted(steps.items()))
    return Episode(
        risk_tier=risk,
        no_show_at=no_show.occurred_at if no_show else None,
        no_show_row=no_show.sequence if no_show else None,
        attempts=attempts,
        reached_at=reached.occurred_at if reached else None,
        reached_row=reached.sequence if reached else None,
        plan_row=plan.sequence if plan else None,
        outcome=closed[0] if closed else None,
        closed_row=closed[1] if closed else None,
        letters=tuple(letters),
        joined=joined,
    )


Check = Callable[[Episode], tuple[Verdict, str, tuple[int, ...]]]


@dataclass(frozen=True)
class Rule:
    """One requirement of a standard, as it bears on one missed session."""

    id: str
    """Short id, unique in its pack."""
    text: str
    """The requirement in words."""
    check: Check
    """Its verdict for an episode."""


@dataclass(frozen=True)
class Pack:
    """A published standard's rules for the follow-up of a missed session."""

    name: str
    """The id a practice file or the CLI names."""
    title: str
    """The standard, in words."""
    rules: tuple[Rule, ...]
    """What it requires."""


def assess(pack: Pack, trail: Sequence[AuditEvent]) -> tuple[Finding, ...]:
    """Each rule of `pack` judged against the session's trail."""
    facts = episode(trail)
    findings = []
    for rule in pack.rules:
        rows: tuple[int, ...]
        if facts.no_show_at is None:
            verdict, why, rows = (Verdict.NOT_APPLICABLE,
                                  "no missed session: the client was not declared a no-show",
                                  ())
        else:
            verdict, why, rows = rule.check(facts)
        findings.append(Finding(rule.id, rule.text, verdict, why, rows))
    return tuple(findings)


def _attempts_before_reached(facts: Episode) -> tuple[Attempt, ...]:
    if facts.reached_at is None:
        return facts.attempts
    reached = facts.reached_at
    return tuple(a for a in facts.attempts if a.first_at <= reached)


def _at_least(count: int, *, calls: bool = False) -> Check:
    what = "calls" if calls else "documented attempts"

    def check(facts: Episode) -> tuple[Verdict, str, tuple[int, ...]]:
        if facts.joined is not None and not facts.attempts:
            return _in_leader(facts.joined)
        attempts = _attempts_before_reached(facts)
        rows = tuple(r for a in attempts for r in (a.calls if calls else a.rows))
        done = len(rows) if calls else len(attempts)
        if done >= count:
            return Verdict.MET, f"{done} {what}", rows
        if facts.reached_row is not None:
            return (Verdict.NOT_APPLICABLE,
                    f"the client was reached after {done} {what}",
                    (*rows, facts.reached_row))
        return Verdict.NOT_MET, f"{done} {what}, {count} required", rows
    return check


def _at_most(count: int) -> Check:
    def check(facts: Episode) -> tuple[Verdict, str, tuple[int, ...]]:
        done = len(facts.attempts)
        rows = tuple(a.rows[0] for a in facts.attempts)
        if done <= count:
            return Verdict.MET, f"{done} attempts (at most {count})", rows
        return Verdict.NOT_MET, f"{done} attempts, more than {count}", rows
    return check


def _first_within(limit: timedelta) -> Check:
    def check(facts: Episode) -> tuple[Verdict, str, tuple[int, ...]]:
        assert facts.no_show_at is not None
        assert facts.no_show_row is not None
        if facts.joined is not None and not facts.attempts:
            return _in_leader(facts.joined)
        if not facts.attempts:
            if facts.reached_row is not None:
                return (Verdict.NOT_APPLICABLE, "the client got in touch before any attempt",
                        (facts.no_show_row, facts.reached_row))
            return Verdict.NOT_MET, "no attempt was made", (facts.no_show_row,)
        first = facts.attempts[0]
        waited = first.first_at - facts.no_show_at
        hours = waited.total_seconds() / 3600
        rows = (facts.no_show_row, first.rows[0])
        if waited <= limit:
            return Verdict.MET, f"first attempt {hours:.1f} h after the no-show", rows
        return (Verdict.NOT_MET,
                f"first attempt {hours:.1f} h after the no-show, limit "
                f"{limit.total_seconds() / 3600:.0f} h", rows)
    return check


def _in_leader(joined: tuple[str, int]) -> tuple[Verdict, str, tuple[int, ...]]:
    leader, row = joined
    return (Verdict.NOT_APPLICABLE,
            f"this session joined the outreach of session {leader} (one ladder for the "
            "person): judge the attempts in that session's trail", (row,))


def _followed_up(facts: Episode) -> tuple[Verdict, str, tuple[int, ...]]:
    if facts.joined is not None and not facts.attempts:
        return _in_leader(facts.joined)
    if facts.attempts:
        return Verdict.MET, "the client was contacted after the missed session", (
            facts.attempts[0].rows[0],)
    if facts.reached_row is not None:
        return Verdict.MET, "the client got in touch", (facts.reached_row,)
    return Verdict.NOT_MET, "no contact was attempted", ()


def _not_discharged(facts: Episode) -> tuple[Verdict, str, tuple[int, ...]]:
    if facts.plan_row is not None:
        return (Verdict.MET, "a follow-up plan was made; the service never discharges",
                (facts.plan_row,))
    if facts.closed_row is None:
        return Verdict.NOT_APPLICABLE, "the session is still open", ()
    return Verdict.NOT_MET, "closed without a follow-up plan", (facts.closed_row,)


def _high_risk_only(check: Check) -> Check:
    def only(facts: Episode) -> tuple[Verdict, str, tuple[int, ...]]:
        if facts.risk_tier is not RiskTier.HIGH:
            return Verdict.NOT_APPLICABLE, "the rule is for high-risk clients", ()
        return check(facts)
    return only


def _letter(kind: LetterKind) -> Check:
    words = kind.value.replace("_", "-")

    def check(facts: Episode) -> tuple[Verdict, str, tuple[int, ...]]:
        rows = tuple(row for made, row in facts.letters if made is kind)
        if rows:
            return (Verdict.MET,
                    f"a {words} letter was prepared, with a task to confirm it was posted",
                    rows[:1])
        if facts.reached_row is not None:
            return (Verdict.NOT_APPLICABLE, "the client was reached",
                    (facts.reached_row,))
        if facts.closed_row is None:
            return Verdict.NOT_MET, f"no {words} letter in the trail yet (still open)", ()
        return (Verdict.NOT_MET,
                f"closed without a {words} letter (the protocol's `letters` did not list one)",
                (facts.closed_row,))
    return check


VA = Pack("va", "VA: documented attempts to contact after a missed mental-health appointment", (
    Rule("three-attempts", "At least three documented attempts to contact the client",
         _at_least(3)),
))
FOLLOW_UP_MATTERS = Pack("follow-up-matters", "988 Lifeline Follow-Up Matters", (
    Rule("first-within-48h", "First attempt within 48 hours of the missed session",
         _first_within(timedelta(hours=48))),
    Rule("three-attempts", "At least three attempts unless the person is reached",
         _at_least(3)),
    Rule("at-most-five", "No more than five attempts", _at_most(5)),
))
NICE_QS188 = Pack("nice-qs188", "NICE QS188 statement 4: follow up after any missed appointment", (
    Rule("followed-up", "Followed up after the missed appointment", _followed_up),
    Rule("not-discharged", "Not discharged automatically for non-attendance", _not_discharged),
))
INSURER_LETTERS = Pack("insurer-letters", "Malpractice insurers' high-risk ladder", (
    Rule("two-calls", "Two documented calls (high risk)",
         _high_risk_only(_at_least(2, calls=True))),
    Rule("first-class-letter", "A first-class letter (high risk)", _high_risk_only(
        _letter(LetterKind.FIRST_CLASS))),
    Rule("certified-letter", "A certified letter (high risk)", _high_risk_only(
        _letter(LetterKind.CERTIFIED))),
))
PACKS = {pack.name: pack for pack in (VA, FOLLOW_UP_MATTERS, NICE_QS188, INSURER_LETTERS)}
"""Every pack by name."""
