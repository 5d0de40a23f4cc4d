"""The roster, pure: who is on call at an instant, coverage gaps, leave and cover, the file."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from missed_session.domain.practice import PracticeFileError, parse
from missed_session.domain.roster import Role, coverage_gaps, on_call, supervisors_for
from missed_session.domain.roster_file import parse_roster

NY = ZoneInfo("America/New_York")

ROSTER = """
version = "2026-11-01"
[protocols.standard]

[roster]
time_zone = "America/New_York"

[roster.clinicians.t-ana]
role = "therapist"
sms = "+14155550101"
email = "ana@clinic.example"
supervisor = "s-maya"

[roster.clinicians.oc-lee]
role = "on_call_clinician"
sms = "+14155550102"

[roster.clinicians.oc-kim]
role = "on_call_clinician"
voice = "+14155550103"

[roster.clinicians.s-maya]
role = "clinical_supervisor"
sms = "+14155550104"

[[roster.on_call]]
clinician = "oc-lee"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:00"
end = "20:00"

[[roster.on_call]]
clinician = "oc-kim"
days = ["sun", "mon", "tue", "wed", "thu", "fri"]
start = "20:00"
end = "08:00"

[[roster.on_call]]
clinician = "oc-kim"
days = ["sat", "sun"]
"""


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def test_who_is_on_call_follows_the_rota_in_its_time_zone() -> None:
    roster = parse_roster(ROSTER, "practice.toml").roster
    assert roster is not None
    assert [c.id for c in on_call(roster, local(2026, 12, 1, 9, 0))] == ["oc-lee"]  # a Tuesday
    assert [c.id for c in on_call(roster, local(2026, 12, 1, 20, 0))] == ["oc-kim"]
    assert [c.id for c in on_call(roster, local(2026, 12, 2, 7, 59))] == ["oc-kim"]  # overnight
    assert [c.id for c in on_call(roster, local(2026, 12, 5, 12, 0))] == ["oc-kim"]  # Saturday
    # The same instant given in UTC: 14:00 UTC is 09:00 in New York in December.
    assert [c.id for c in on_call(roster, datetime(2026, 12, 1, 14, tzinfo=UTC))] == ["oc-lee"]
    # Summer time: 13:00 UTC is 09:00 EDT, the day shift; 12:59 UTC still the night shift.
    assert [c.id for c in on_call(roster, datetime(2026, 7, 7, 13, tzinfo=UTC))] == ["oc-lee"]
    assert [c.id for c in on_call(roster, datetime(2026, 7, 7, 11, 59, tzinfo=UTC))] == ["oc-kim"]


def test_leave_with_cover_hands_the_shifts_over() -> None:
    text = ROSTER + """
[[roster.leave]]
clinician = "oc-lee"
start = 2026-12-24T00:00:00-05:00
end = 2026-12-26T00:00:00-05:00
cover = "oc-kim"
"""
    roster = parse_roster(text, "practice.toml").roster
    assert roster is not None
    assert [c.id for c in on_call(roster, local(2026, 12, 24, 10, 0))] == ["oc-kim"]
    assert [c.id for c in on_call(roster, local(2026, 12, 28, 10, 0))] == ["oc-lee"]


def test_a_rota_gap_is_refused_naming_the_hours() -> None:
    text = ROSTER.replace('days = ["sat", "sun"]', 'days = ["sat"]')
    with pytest.raises(PracticeFileError) as refused:
        parse_roster(text, "practice.toml")
    message = str(refused.value)
    assert "practice.toml: roster.on_call: nobody is on call sun 00:00-20:00" in message
    assert "accept_coverage_gaps" in message


def test_night_gap_is_named_by_day_and_local_time() -> None:
    text = ROSTER.replace('start = "20:00"\nend = "08:00"', 'start = "20:00"\nend = "23:00"')
    with pytest.raises(PracticeFileError, match=r"tue 23:00-wed 08:00"):
        parse_roster(text, "practice.toml")


def test_leave_without_cover_is_a_gap_with_its_dates() -> None:
    text = ROSTER + """
[[roster.leave]]
clinician = "oc-lee"
start = 2026-12-24T00:00:00-05:00
end = 2026-12-25T00:00:00-05:00
"""
    with pytest.raises(PracticeFileError,
                       match=r"2026-12-24 08:00-2026-12-24 20:00 \(leave of oc-lee\)"):
        parse_roster(text, "practice.toml")


def test_a_gap_the_file_accepts_loads_with_a_warning() -> None:
    text = ROSTER.replace('days = ["sat", "sun"]', 'days = ["sat"]').replace(
        'time_zone = "America/New_York"\n', 'time_zone = "America/New_York"\n'
        "accept_coverage_gaps = true\n", 1)
    loaded = parse_roster(text, "practice.toml")
    assert loaded.roster is not None
    assert loaded.warnings
    assert "sun 00:00-20:00" in loaded.warnings[0]
    assert on_call(loaded.roster, local(2026, 12, 6, 12, 0)) == ()


def test_shifts_in_different_zones_cover_each_other_in_both_seasons() -> None:
    text = ROSTER.replace('start = "20:00"\nend = "08:00"',
                          'start = "01:00"\nend = "13:00"\ntime_zone = "UTC"')
    # 20:00-08:00 New York is 01:00-13:00 UTC in winter but 00:00-12:00 UTC in summer.
    with pytest.raises(PracticeFileError, match=r"nobody is on call"):
        parse_roster(text, "practice.toml")


def test_supervisor_is_the_therapists_own_or_any_present() -> None:
    text = ROSTER.replace('[[roster.on_call]]', """[roster.clinicians.s-noor]
role = "clinical_supervisor"
email = "noor@clinic.example"

[[roster.leave]]
clinician = "s-maya"
start = 2026-12-24T00:00:00-05:00
end = 2026-12-26T00:00:00-05:00

[[roster.on_call]]""", 1)
    roster = parse_roster(text, "practice.toml").roster
    assert roster is not None
    assert [c.id for c in supervisors_for(roster, "t-ana", local(2026, 12, 1, 9))] == ["s-maya"]
    assert [c.id for c in supervisors_for(roster, "t-ana", local(2026, 12, 24, 9))] == ["s-noor"]
    assert roster.clinician("s-noor") is not None
    assert roster.by_number("+14155550102") == roster.clinician("oc-lee")
    assert roster.clinicians[0].role is Role.THERAPIST


@pytest.mark.parametrize(("change", "error"), [
    (('sms = "+14155550101"', 'sms = "555"'),
     "practice.toml: roster.clinicians.t-ana.sms: must be an E.164 phone number"),
    (('role = "therapist"', 'role = "doctor"'), "roster.clinicians.t-ana.role: Input should be"),
    (('clinician = "oc-lee"', 'clinician = "oc-nobody"'), "unknown clinician 'oc-nobody'"),
    (('days = ["sat", "sun"]', 'days = ["sat", "sunday"]'), "unknown day 'sunday'"),
    (('supervisor = "s-maya"', 'supervisor = "oc-lee"'), "is not a clinical supervisor"),
    (('voice = "+14155550103"', 'notify_by = ["sms"]'),
     "roster.clinicians.oc-kim: notify_by names sms but no address is given"),
    (('voice = "+14155550103"', ''), "roster.clinicians.oc-kim: needs at least one of sms"),
])
def test_bad_roster_entries_are_refused_naming_the_key(change: tuple[str, str],
                                                       error: str) -> None:
    with pytest.raises(PracticeFileError, match=None) as refused:
        parse_roster(ROSTER.replace(*change, 1), "practice.toml")
    assert error in str(refused.value)


def test_the_protocol_parser_accepts_a_file_with_a_roster() -> None:
    assert parse(ROSTER, "practice.toml").default == "standard"


def test_coverage_gaps_is_empty_for_a_full_rota() -> None:
    roster = parse_roster(ROSTER, "practice.toml").roster
    assert roster is not None
    assert coverage_gaps(roster) == []
