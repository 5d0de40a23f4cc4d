"""Protocol packs judged against trails built from the real event models (pure)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from missed_session.domain import conformance_report, events
from missed_session.domain.conformance import PACKS, Finding, Verdict, assess
from missed_session.domain.models import (
    AuditEvent,
    CallResult,
    Channel,
    LetterKind,
    Modality,
    Outcome,
    ResponseChannel,
    RiskTier,
)
from missed_session.store.audit import AuditStore
from tests.support.audit_export import cli_env
from tests.support.console_people import app, browsers

__all__ = ["app", "browsers", "cli_env"]  # the fixtures, shared

START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


class Trail:
    """A session's trail, written the way the workflow writes it."""

    def __init__(self, risk: RiskTier = RiskTier.STANDARD, session_id: str = "s-1") -> None:
        self.session_id = session_id
        self.rows: list[AuditEvent] = []
        self.add(events.Scheduled(client_ref="c-1", therapist_id="t-ana", start=START,
                                  duration_minutes=50, modality=Modality.IN_PERSON,
                                  risk_tier=risk, grace_period_minutes=15), START)

    def add(self, details: events.EventDetails, at: datetime) -> int:
        sequence = len(self.rows) + 1
        self.rows.append(events.new_event(session_id=self.session_id, sequence=sequence,
                                          occurred_at=at, details=details))
        return sequence

    def no_show(self) -> int:
        return self.add(events.GracePeriodExpired(grace_period_minutes=15),
                        START + timedelta(minutes=15))

    def attempt(self, number: int, after: timedelta, *, voicemail: bool = True) -> int:
        at = START + timedelta(minutes=15) + after
        row = self.add(events.OutreachAttempted(attempt=number, result=CallResult.NO_ANSWER), at)
        if voicemail:
            self.add(events.VoicemailLeft(attempt=number), at + timedelta(minutes=1))
        return row

    def reached(self, after: timedelta) -> int:
        return self.add(events.ClientResponded(channel=ResponseChannel.CALL, responder="client"),
                        START + timedelta(minutes=15) + after)

    def close(self, outcome: Outcome, attempts: int) -> None:
        at = self.rows[-1].occurred_at + timedelta(minutes=1)
        self.add(events.PlanCreated(concerns="", tasks="", no_shows_90_days=1,
                                    consecutive_no_shows=1), at)
        self.add(events.Closed(outcome=outcome, attempts=attempts), at)


def verdicts(pack: str, trail: Trail) -> dict[str, Verdict]:
    return {finding.rule: finding.verdict for finding in assess(PACKS[pack], trail.rows)}


def test_three_unanswered_attempts_meet_the_va_rule_with_their_rows_as_evidence() -> None:
    trail = Trail()
    trail.no_show()
    rows = [trail.attempt(n, timedelta(minutes=15 * (n - 1))) for n in (1, 2, 3)]
    trail.close(Outcome.UNREACHABLE_ESCALATION_BLOCKED, 3)

    [finding] = assess(PACKS["va"], trail.rows)

    assert finding.verdict is Verdict.MET
    assert set(rows) <= set(finding.evidence)


def test_two_attempts_then_closed_unreached_do_not_meet_it() -> None:
    trail = Trail()
    trail.no_show()
    trail.attempt(1, timedelta())
    trail.attempt(2, timedelta(minutes=15))
    trail.close(Outcome.UNREACHABLE_ESCALATION_BLOCKED, 2)

    [finding] = assess(PACKS["va"], trail.rows)

    assert finding.verdict is Verdict.NOT_MET
    assert finding.why == "2 documented attempts, 3 required"


def test_a_client_reached_first_makes_the_count_not_applicable_and_says_why() -> None:
    trail = Trail()
    trail.no_show()
    trail.attempt(1, timedelta())
    reached = trail.reached(timedelta(minutes=5))
    trail.close(Outcome.REACHED, 1)

    [finding] = assess(PACKS["va"], trail.rows)

    assert finding.verdict is Verdict.NOT_APPLICABLE
    assert "reached after 1" in finding.why
    assert reached in finding.evidence


def test_an_attended_session_is_not_judged() -> None:
    trail = Trail()
    trail.add(events.CheckedIn(late=False), START)
    trail.add(events.Closed(outcome=Outcome.ATTENDED, attempts=0), START)

    for pack in PACKS:
        assert set(verdicts(pack, trail).values()) == {Verdict.NOT_APPLICABLE}


def test_follow_up_matters_wants_the_first_attempt_within_48_hours() -> None:
    prompt, late = Trail(), Trail()
    for trail, after in ((prompt, timedelta(hours=1)), (late, timedelta(hours=60))):
        trail.no_show()
        for n in (1, 2, 3):
            trail.attempt(n, after + timedelta(hours=n - 1))
        trail.close(Outcome.UNREACHABLE_ESCALATION_BLOCKED, 3)

    assert verdicts("follow-up-matters", prompt) == {
        "first-within-48h": Verdict.MET, "three-attempts": Verdict.MET,
        "at-most-five": Verdict.MET}
    assert verdicts("follow-up-matters", late)["first-within-48h"] is Verdict.NOT_MET


def test_nice_qs188_wants_a_follow_up_and_no_automatic_discharge() -> None:
    trail = Trail()
    trail.no_show()
    trail.attempt(1, timedelta())
    trail.close(Outcome.UNREACHABLE_ESCALATION_BLOCKED, 1)
    assert set(verdicts("nice-qs188", trail).values()) == {Verdict.MET}

    silent = Trail()
    silent.no_show()
    silent.add(events.Closed(outcome=Outcome.STOOD_DOWN, attempts=0),
               START + timedelta(minutes=20))
    assert verdicts("nice-qs188", silent) == {
        "followed-up": Verdict.NOT_MET, "not-discharged": Verdict.NOT_MET}


def test_the_insurers_letters_are_not_met_when_the_protocol_sent_none() -> None:
    trail = Trail(RiskTier.HIGH)
    trail.no_show()
    trail.attempt(1, timedelta())
    trail.attempt(2, timedelta(minutes=15))
    trail.close(Outcome.UNREACHABLE_ESCALATED, 2)

    found = {f.rule: f for f in assess(PACKS["insurer-letters"], trail.rows)}

    assert found["two-calls"].verdict is Verdict.MET
    assert found["first-class-letter"].verdict is Verdict.NOT_MET
    assert "closed without a certified letter" in found["certified-letter"].why
    assert set(verdicts("insurer-letters", _standard_risk_copy()).values()) == {
        Verdict.NOT_APPLICABLE}


def letter(trail: Trail, number: int, kind: LetterKind, after: timedelta) -> int:
    return trail.add(events.LetterPrepared(
        number=number, kind=kind, file=f"s-1/letter-{number}-{kind.value}.pdf",
        digest="0" * 64, addressed=True, task=f"s-1/letter-{number}"),
        START + timedelta(minutes=15) + after)


def test_the_insurers_ladder_is_met_by_two_calls_and_both_letters_with_their_rows() -> None:
    trail = Trail(RiskTier.HIGH)
    trail.no_show()
    trail.attempt(1, timedelta(), voicemail=False)
    trail.attempt(2, timedelta(minutes=15), voicemail=False)
    first = letter(trail, 1, LetterKind.FIRST_CLASS, timedelta(minutes=16))
    certified = letter(trail, 2, LetterKind.CERTIFIED, timedelta(days=7))
    trail.close(Outcome.UNREACHABLE_ESCALATED, 2)

    found = {f.rule: f for f in assess(PACKS["insurer-letters"], trail.rows)}

    assert {rule: f.verdict for rule, f in found.items()} == {
        "two-calls": Verdict.MET, "first-class-letter": Verdict.MET,
        "certified-letter": Verdict.MET}
    assert found["first-class-letter"].evidence == (first,)
    assert found["certified-letter"].evidence == (certified,)


def test_a_first_class_letter_alone_leaves_the_certified_one_not_met() -> None:
    trail = Trail(RiskTier.HIGH)
    trail.no_show()
    trail.attempt(1, timedelta())
    trail.attempt(2, timedelta(minutes=15))
    letter(trail, 1, LetterKind.FIRST_CLASS, timedelta(minutes=20))

    found = {f.rule: f for f in assess(PACKS["insurer-letters"], trail.rows)}

    assert found["first-class-letter"].verdict is Verdict.MET
    assert found["certified-letter"].verdict is Verdict.NOT_MET
    assert "still open" in found["certified-letter"].why


def _standard_risk_copy() -> Trail:
    trail = Trail(RiskTier.STANDARD)
    trail.no_show()
    trail.attempt(1, timedelta())
    return trail


def test_a_superseded_row_is_not_counted() -> None:
    trail = Trail()
    trail.no_show()
    first = trail.attempt(1, timedelta(), voicemail=False)
    trail.add(events.TrailSuperseded(first=first, last=first), START + timedelta(minutes=16))
    trail.attempt(1, timedelta(minutes=2), voicemail=False)

    [finding] = assess(PACKS["va"], trail.rows)

    assert first not in finding.evidence


@given(st.lists(st.sampled_from(["attempt", "reached"]), max_size=8),
       st.sampled_from(sorted(PACKS)))
def test_every_rule_answers_and_cites_only_rows_of_the_trail(steps: list[str],
                                                           pack: str) -> None:
    trail = Trail(RiskTier.HIGH)
    trail.no_show()
    number = 0
    for index, step in enumerate(steps):
        if step == "attempt":
            number += 1
            trail.attempt(number, timedelta(minutes=15 * index))
        else:
            trail.reached(timedelta(minutes=15 * index + 1))
    findings = assess(PACKS[pack], trail.rows)

    assert len(findings) == len(PACKS[pack].rules)
    places = {row.sequence for row in trail.rows}
    for finding in findings:
        assert finding.why
        assert set(finding.evidence) <= places
        if finding.verdict is Verdict.MET and finding.rule.endswith("attempts"):
            assert number >= 3


@pytest.mark.parametrize("channel", [Channel.TEXT, Channel.EMAIL])
def test_a_text_or_email_is_an_attempt_but_not_a_call(channel: Channel) -> None:
    trail = Trail(RiskTier.HIGH)
    trail.no_show()
    for n in (1, 2):
        trail.add(events.MessageSent(attempt=n, channel=channel),
                  START + timedelta(minutes=20 * n))

    found = {f.rule: f.verdict for f in assess(PACKS["insurer-letters"], trail.rows)}

    assert found["two-calls"] is Verdict.NOT_MET


# -- the recorded histories' real trails, and the command -----------------------------------


RECORDED = json.loads((Path(__file__).parent / "histories" / "outcomes.json").read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_trails_are_judged(name: str) -> None:
    """Every recorded branch's real trail: a verdict per rule; no-shows were followed up."""
    from tests.support.audit_replay import HISTORIES, load, trail_from_history

    trail = await trail_from_history(load(HISTORIES / f"{name}.json"))
    outcome = Outcome(RECORDED[name])

    for pack in PACKS.values():
        findings = assess(pack, trail)
        assert len(findings) == len(pack.rules)
        if outcome in {Outcome.ATTENDED, Outcome.CANCELLED}:  # never declared a no-show
            assert {f.verdict for f in findings} == {Verdict.NOT_APPLICABLE}, name
    nice = verdicts_of(assess(PACKS["nice-qs188"], trail))
    if outcome.is_no_show:
        assert nice["not-discharged"] is Verdict.MET
        if outcome in {Outcome.UNREACHABLE_ESCALATED, Outcome.UNREACHABLE_ESCALATION_BLOCKED}:
            assert nice["followed-up"] is Verdict.MET


def verdicts_of(findings: tuple[Finding, ...]) -> dict[str, Verdict]:
    return {finding.rule: finding.verdict for finding in findings}


@pytest.mark.usefixtures("cli_env")
async def test_audit_conformance_command(pool: asyncpg.Pool,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import starter
    from tests.support.audit_replay import HISTORIES, load, trail_from_history

    trail = await trail_from_history(load(HISTORIES / "unreachable_escalated.json"))
    store = AuditStore(pool)
    for event in trail:
        assert (await store.record([event])).new
    session_id = trail[0].session_id

    def cli(*argv: str) -> int:
        return starter.main(list(argv))

    code = await asyncio.to_thread(cli, "audit", "conformance", session_id, "--pack",
                                   "nice-qs188")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MET" in out
    assert "Followed up after the missed appointment" in out
    assert "#" in out  # rows cited
    code = await asyncio.to_thread(cli, "audit", "conformance", session_id, "--pack",
                                   "insurer-letters")
    out = capsys.readouterr().out
    letters = [line for line in out.splitlines() if "letter" in line]
    assert letters
    assert (code == 1) is any("NOT_MET" in line for line in letters)
    assert await asyncio.to_thread(cli, "audit", "conformance", "s-none") == 1
    assert await asyncio.to_thread(cli, "audit", "conformance", session_id, "--pack",
                                   "nonsense") == 2


# -- a practice report over a period ---------------------------------------------------------


def _period_trails() -> dict[str, Trail]:
    """Three sessions: three attempts (met), two (not met), reached after one (n/a)."""
    met, missed, reached = (Trail(session_id=f"s-{name}") for name in ("met", "missed", "reached"))
    for trail, attempts in ((met, 3), (missed, 2), (reached, 1)):
        trail.no_show()
        for n in range(1, attempts + 1):
            trail.attempt(n, timedelta(minutes=15 * (n - 1)))
    reached.reached(timedelta(minutes=5))
    met.close(Outcome.UNREACHABLE_ESCALATION_BLOCKED, 3)
    missed.close(Outcome.UNREACHABLE_ESCALATION_BLOCKED, 2)
    reached.close(Outcome.REACHED, 1)
    return {trail.session_id: trail for trail in (met, missed, reached)}


def test_a_report_counts_each_rule_over_the_periods_sessions_and_lists_them() -> None:
    trails = {sid: trail.rows for sid, trail in _period_trails().items()}

    found = conformance_report.report(PACKS["va"], trails)

    [tally] = found.rules
    assert (tally.count(Verdict.MET), tally.count(Verdict.NOT_MET),
            tally.count(Verdict.NOT_APPLICABLE)) == (1, 1, 1)
    assert tally.sessions[Verdict.NOT_MET] == ("s-missed",)
    assert found.missed
    text = conformance_report.text([found], period="2026-12-01..2026-12-31", sessions=3)
    assert "1 met, 1 not met, 1 not applicable" in text
    assert "not met: s-missed" in text
    rows = conformance_report.as_csv([found]).splitlines()
    assert rows[0] == ",".join(conformance_report.CSV_HEADER)
    assert len(rows) == 1 + 3
    assert any(row.startswith("va,three-attempts,s-missed,not_met,") for row in rows)


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=8))
def test_a_report_counts_every_session_once_per_rule(attempt_counts: list[int]) -> None:
    trails = {}
    for index, attempts in enumerate(attempt_counts):
        trail = Trail(session_id=f"s-{index}")
        trail.no_show()
        for n in range(1, attempts + 1):
            trail.attempt(n, timedelta(hours=n))
        trails[trail.session_id] = trail.rows
    for pack in PACKS.values():
        found = conformance_report.report(pack, trails)
        for tally in found.rules:
            assert sum(tally.count(v) for v in Verdict) == len(trails)
            assert sorted(s for ids in tally.sessions.values() for s in ids) == sorted(trails)


@pytest.mark.usefixtures("cli_env")
async def test_audit_conformance_report_command(pool: asyncpg.Pool,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import starter

    store = AuditStore(pool)
    for trail in _period_trails().values():
        for event in trail.rows:
            assert (await store.record([event])).new

    def cli(*argv: str) -> int:
        return starter.main(list(argv))

    day = START.date().isoformat()
    code = await asyncio.to_thread(cli, "audit", "conformance", "--from", day, "--to", day,
                                   "--pack", "va")
    out = capsys.readouterr().out
    assert code == 1, out  # one session missed the rule
    assert f"conformance over {day}..{day}: 3 sessions" in out
    assert "1 met, 1 not met, 1 not applicable" in out
    code = await asyncio.to_thread(cli, "audit", "conformance", "--from", day, "--to", day,
                                   "--pack", "nice-qs188", "--csv")
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == ",".join(conformance_report.CSV_HEADER)
    assert len(lines) == 1 + 3 * 2
    later = (START + timedelta(days=2)).date().isoformat()
    assert await asyncio.to_thread(cli, "audit", "conformance", "--from", later,
                                   "--to", later) == 1
    assert "no sessions started" in capsys.readouterr().out
    assert await asyncio.to_thread(cli, "audit", "conformance", "--from", day) == 2
    assert await asyncio.to_thread(cli, "audit", "conformance", "s-met", "--csv") == 2


async def test_the_session_page_shows_the_sessions_verdicts(
    browsers: dict[str, httpx.AsyncClient],
) -> None:
    """The console's panel: each pack's verdict on the session, open where one was missed."""
    page = await browsers["t-ana"].get("/console/sessions/s-robin-2")  # 1 call, unreached

    assert page.status_code == 200, page.text
    text = page.text
    assert "Published standards" in text
    panel = text.split('id="conformance-heading"', 1)[1].split("</section>", 1)[0]
    assert '<details class="conformance" open><summary>VA: documented attempts' in panel
    assert ('<li data-verdict="not_met"><strong>not met</strong>: At least three documented '
            "attempts to contact the client: 1 documented attempts, 3 required") in panel
    assert "(events 3)" in panel
