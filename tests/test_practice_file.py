"""Practice protocols as data: validated with errors naming file, key and rule; resolved."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from missed_session.domain import protocol
from missed_session.domain.models import Channel, RiskTier
from missed_session.domain.practice import PracticeFileError, parse
from missed_session.practice_file import load_practice_file
from tests.support.factories import booking

GOOD = """
version = "2026-11-01"
default_protocol = "standard"

[protocols.standard]
channels = ["call", "voicemail", "text"]

[protocols.intensive]
grace_period_minutes = 10
high_risk_grace_period_minutes = 5
attempt_spacing_minutes = 10
max_attempts = 4
escalate_after = { standard = 2, elevated = 1, high = 1 }
high_risk_escalation_outside_window = true
contact_window = { start = 07:30:00, end = "22:00" }

[therapists.t-ana]
protocol = "intensive"
max_attempts = 5

[therapists.t-ben]
contact_window = { start = "09:00", end = "20:00" }
"""


def test_a_good_file_resolves_each_therapists_protocol() -> None:
    practice = parse(GOOD, "practice.toml")

    ana = practice.for_therapist("t-ana")
    assert (ana.name, ana.max_attempts, ana.attempt_spacing_minutes) == ("intensive", 5, 10)
    assert ana.contact_window.start == time(7, 30)
    assert ana.high_risk_escalation_outside_window
    ben = practice.for_therapist("t-ben")
    assert (ben.name, ben.contact_window.start, ben.channels) == (
        "standard", time(9), (Channel.CALL, Channel.VOICEMAIL, Channel.TEXT)
    )
    other = practice.for_therapist("t-someone-else")
    assert other.name == "standard"
    assert other.contact_window.start == time(8)
    assert practice.version.startswith("2026-11-01+")
    assert {ana.version, ben.version, other.version} == {practice.version}


def test_resolving_a_booking_keeps_its_time_scale_and_records_the_version() -> None:
    practice = parse(GOOD, "practice.toml")
    resolved = practice.resolve(booking(therapist_id="t-ana", protocol={"time_scale": 60}))
    assert resolved.protocol.name == "intensive"
    assert resolved.protocol.time_scale == 60
    assert resolved.protocol.version == practice.version
    assert protocol.escalation_after_attempt(resolved) == 2  # standard risk: after attempt 2


def test_any_edit_changes_the_recorded_version() -> None:
    edited = GOOD.replace("max_attempts = 5", "max_attempts = 6")
    assert parse(GOOD, "p.toml").version != parse(edited, "p.toml").version


def test_escalation_per_risk_tier_is_capped_by_the_attempts() -> None:
    session = booking(risk_tier="elevated",
                      protocol={"max_attempts": 2, "escalate_after": {"elevated": 5}})
    assert session.risk_tier is RiskTier.ELEVATED
    assert protocol.escalation_after_attempt(session) == 2


@pytest.mark.parametrize(("change", "message"), [
    (("max_attempts = 4", "max_attempts = 40"),
     "practice.toml: protocols.intensive.max_attempts: must be at most 10"),
    (("max_attempts = 4", "max_attempts = 4\nretries = 2"),
     "practice.toml: protocols.intensive.retries: unknown setting"),
    (('protocol = "intensive"', 'protocol = "gentle"'),
     "practice.toml: therapists.t-ana.protocol: unknown protocol 'gentle' "
     "(known: standard, intensive)"),
    (('default_protocol = "standard"', 'default_protocol = "none"'),
     "practice.toml: default_protocol: unknown protocol 'none'"),
    (('version = "2026-11-01"', ""), "practice.toml: version: required"),
    (('channels = ["call", "voicemail", "text"]', 'channels = ["call", "pager"]'),
     "practice.toml: protocols.standard.channels.1: Input should be"),
    (('end = "22:00"', 'end = "07:00"'),
     "practice.toml: protocols.intensive.contact_window: contact window start must be before"),
    (("high_risk_grace_period_minutes = 5", "high_risk_grace_period_minutes = 20"),
     "practice.toml: protocols.intensive: high_risk_grace_period_minutes must not exceed"),
    (("max_attempts = 5", "max_attempts = 0"),
     "practice.toml: therapists.t-ana.max_attempts: must be at least 1"),
    (("max_attempts = 5", "time_scale = 60"),
     "practice.toml: therapists.t-ana.time_scale: not allowed in a practice file"),
    (("[therapists.t-ben]", "[therapists.t-ben]\nescalate_after = { high = 0 }"),
     "practice.toml: therapists.t-ben.escalate_after.high: must be at least 1"),
])
def test_a_bad_file_is_refused_naming_the_key_and_rule(change: tuple[str, str],
                                                       message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(PracticeFileError) as refused:
        parse(GOOD.replace(old, new), "practice.toml")
    assert str(refused.value).startswith(message), str(refused.value)


def test_bad_toml_names_the_file_and_line() -> None:
    with pytest.raises(PracticeFileError, match=r"practice.toml: not valid TOML: .*line 3"):
        parse('version = "1"\n[protocols.standard]\nmax_attempts = = 3\n', "practice.toml")


def test_loading_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PracticeFileError, match=r"missing\.toml: cannot be read"):
        load_practice_file(tmp_path / "missing.toml")
    (tmp_path / "p.toml").write_text(GOOD, encoding="utf-8")
    assert load_practice_file(tmp_path / "p.toml").default == "standard"
