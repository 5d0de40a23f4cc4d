"""The contact window: pure rules, including both daylight-saving changes of a year."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from missed_session.domain.contact_window import is_open, local_date, next_allowed, wall_time
from missed_session.domain.models import ContactWindow

NEW_YORK = "America/New_York"
DEFAULT = ContactWindow()


def ny(year: int, month: int, day: int, hour: int, minute: int = 0, *, fold: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(NEW_YORK), fold=fold)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_inside_the_window_is_now() -> None:
    at = ny(2026, 6, 10, 14, 5)
    assert next_allowed(at, NEW_YORK, DEFAULT) == at
    assert is_open(at, NEW_YORK, DEFAULT)


@pytest.mark.parametrize(("local", "opens"), [
    (ny(2026, 6, 10, 22, 30), ny(2026, 6, 11, 8)),  # a no-show at 22:30 waits for 08:00
    (ny(2026, 6, 10, 21, 0), ny(2026, 6, 11, 8)),   # the end is exclusive
    (ny(2026, 6, 10, 6, 45), ny(2026, 6, 10, 8)),   # early morning: today at 08:00
    (ny(2026, 6, 10, 0, 0), ny(2026, 6, 10, 8)),
    (ny(2026, 12, 31, 23, 0), ny(2027, 1, 1, 8)),   # over the year's end
])
def test_outside_the_window_waits_for_it_to_open(local: datetime, opens: datetime) -> None:
    assert next_allowed(local, NEW_YORK, DEFAULT) == opens
    assert not is_open(local, NEW_YORK, DEFAULT)


def test_the_window_opens_at_8_local_on_the_spring_change() -> None:
    # 2026-03-08: clocks go from 02:00 EST to 03:00 EDT. 22:30 EST the evening before is
    # 03:30 UTC; 08:00 EDT is 12:00 UTC: 8.5 hours later, not 9.5.
    no_show = ny(2026, 3, 7, 22, 30)
    assert no_show.astimezone(UTC) == utc(2026, 3, 8, 3, 30)
    opens = next_allowed(no_show, NEW_YORK, DEFAULT)
    assert opens == utc(2026, 3, 8, 12, 0)
    assert opens - no_show == timedelta(hours=8, minutes=30)
    assert opens.astimezone(ZoneInfo(NEW_YORK)).hour == 8


def test_the_window_opens_at_8_local_on_the_autumn_change() -> None:
    # 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST. 22:30 EDT the evening before
    # is 02:30 UTC; 08:00 EST is 13:00 UTC: 10.5 hours later.
    no_show = ny(2026, 10, 31, 22, 30)
    assert no_show.astimezone(UTC) == utc(2026, 11, 1, 2, 30)
    opens = next_allowed(no_show, NEW_YORK, DEFAULT)
    assert opens == utc(2026, 11, 1, 13, 0)
    assert opens - no_show == timedelta(hours=10, minutes=30)


def test_the_window_closes_at_21_local_across_the_changes() -> None:
    assert is_open(utc(2026, 3, 9, 0, 59), NEW_YORK, DEFAULT)       # 20:59 EDT
    assert not is_open(utc(2026, 3, 9, 1, 0), NEW_YORK, DEFAULT)    # 21:00 EDT
    assert is_open(utc(2026, 11, 2, 1, 59), NEW_YORK, DEFAULT)      # 20:59 EST
    assert not is_open(utc(2026, 11, 2, 2, 0), NEW_YORK, DEFAULT)   # 21:00 EST


def test_a_start_inside_the_spring_gap_opens_after_the_gap() -> None:
    window = ContactWindow(start=time(2, 30), end=time(21))
    opens = next_allowed(ny(2026, 3, 8, 1, 0), NEW_YORK, window)
    # 02:30 does not exist that night; it resolves to 03:30 EDT (07:30 UTC), never earlier.
    assert opens == utc(2026, 3, 8, 7, 30)
    assert is_open(opens, NEW_YORK, window)


def test_an_ambiguous_start_on_the_autumn_change_opens_at_its_first_occurrence() -> None:
    window = ContactWindow(start=time(1, 30), end=time(21))
    opens = next_allowed(ny(2026, 11, 1, 0, 10), NEW_YORK, window)
    assert opens == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first of the two


def test_other_time_zones_use_their_own_local_hours() -> None:
    at = utc(2026, 6, 10, 22, 0)  # 18:00 in New York, 07:00 the next day in Tokyo
    assert is_open(at, NEW_YORK, DEFAULT)
    assert next_allowed(at, "Asia/Tokyo", DEFAULT) == utc(2026, 6, 10, 23, 0)
    assert local_date(at, "Asia/Tokyo").isoformat() == "2026-06-11"


def test_a_window_must_open_before_it_closes() -> None:
    with pytest.raises(ValidationError, match="start must be before its end"):
        ContactWindow(start=time(21), end=time(8))


@pytest.mark.parametrize(("local", "expected"), [
    (datetime(2026, 3, 8, 2, 30), "does not exist in America/New_York"),  # noqa: DTZ001 - a wall time
    (datetime(2026, 11, 1, 1, 30), "happens twice in America/New_York"),  # noqa: DTZ001
])
def test_a_wall_time_that_names_no_instant_or_two_is_refused(local: datetime,
                                                              expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        wall_time(local, "America/New_York")


def test_an_ordinary_wall_time_is_its_instant() -> None:
    after_gap = datetime(2026, 3, 8, 3, 30)  # noqa: DTZ001 - a wall time
    summer = datetime(2026, 7, 1, 9, 0)  # noqa: DTZ001 - a wall time
    assert wall_time(after_gap, NEW_YORK) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert wall_time(summer, "Europe/London").utcoffset() == timedelta(hours=1)
