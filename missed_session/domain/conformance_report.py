"""A practice's conformance over a period: each pack's rules counted over every session.

A supervisor asks "over December, how often did we do what the standard asks?"; the answer
is the per-session verdicts of `conformance.assess`, counted per rule (met, not met, not
applicable) with the sessions behind each count, so a reviewer can open any of them with
`starter.py audit conformance <session>`. Pure: the trails are given.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from missed_session.domain.conformance import Finding, Pack, Verdict, assess
from missed_session.domain.models import AuditEvent


@dataclass(frozen=True)
class RuleTally:
    """One rule over the period."""

    rule: str
    text: str
    sessions: Mapping[Verdict, tuple[str, ...]]
    """The sessions with each verdict, in session order."""

    def count(self, verdict: Verdict) -> int:
        """How many sessions had `verdict`."""
        return len(self.sessions.get(verdict, ()))


@dataclass(frozen=True)
class PackReport:
    """One pack over the period."""

    pack: Pack
    rules: tuple[RuleTally, ...]
    findings: Mapping[str, tuple[Finding, ...]]
    """Each session's findings, for the CSV's rows."""

    @property
    def missed(self) -> bool:
        """Whether any session missed a rule that applied to it."""
        return any(tally.count(Verdict.NOT_MET) for tally in self.rules)


def report(pack: Pack, trails: Mapping[str, Sequence[AuditEvent]]) -> PackReport:
    """Every session's trail judged against `pack`, counted per rule."""
    findings = {session_id: assess(pack, trails[session_id]) for session_id in sorted(trails)}
    tallies = []
    for index, rule in enumerate(pack.rules):
        by_verdict: dict[Verdict, list[str]] = {verdict: [] for verdict in Verdict}
        for session_id, found in findings.items():
            by_verdict[found[index].verdict].append(session_id)
        tallies.append(RuleTally(rule.id, rule.text,
                                 {verdict: tuple(ids) for verdict, ids in by_verdict.items()}))
    return PackReport(pack, tuple(tallies), findings)


def text(reports: Sequence[PackReport], *, period: str, sessions: int,
         listed: int = 20) -> str:
    """The report for a reader: counts per rule, and the sessions that missed it."""
    lines = [f"conformance over {period}: {sessions} sessions"]
    for found in reports:
        lines.append(f"{found.pack.title} [{found.pack.name}]")
        for tally in found.rules:
            lines.append(f"  {tally.text}: {tally.count(Verdict.MET)} met, "
                         f"{tally.count(Verdict.NOT_MET)} not met, "
                         f"{tally.count(Verdict.NOT_APPLICABLE)} not applicable")
            missed = tally.sessions.get(Verdict.NOT_MET, ())
            if missed:
                more = f" and {len(missed) - listed} more" if len(missed) > listed else ""
                lines.append(f"    not met: {', '.join(missed[:listed])}{more}")
    return "\n".join(lines)


CSV_HEADER = ("pack", "rule", "session_id", "verdict", "why", "evidence")


def as_csv(reports: Sequence[PackReport]) -> str:
    """One row per pack, rule and session: for a spreadsheet or the practice's own tools."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for found in reports:
        for session_id, findings in found.findings.items():
            for finding in findings:
                writer.writerow((found.pack.name, finding.rule, session_id,
                                 finding.verdict.value, finding.why,
                                 " ".join(f"#{row}" for row in finding.evidence)))
    return out.getvalue()
