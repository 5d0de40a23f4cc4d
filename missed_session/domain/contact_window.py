"""When the client may be contacted: the local contact window, across daylight-saving changes.

Pure: given an instant, the client's IANA time zone and the window, it says the first
instant at or after it at which outreach is allowed. Local wall-clock times are turned into
instants through `zoneinfo`, so a window opening at 08:00 opens at 08:00 local on the day
the clocks change too (12:00 UTC instead of 13:00 in New York on the March change).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from missed_session.domain.models import ContactWindow


def is_open(at: datetime, time_zone: str, window: ContactWindow) -> bool:
    """Whether `at` falls inside the window in the client's local time."""
    local = at.astimezone(ZoneInfo(time_zone)).time()
    return window.start <= local < window.end


def next_allowed(at: datetime, time_zone: str, window: ContactWindow) -> datetime:
    """The first instant at or after `at` inside the window, in UTC.

    Outside the window it is the window's start on the same local day (before the window)
    or the next local day (after it). A start time that does not exist that day (it falls
    in a spring-forward gap) opens at the instant the same number of minutes after the gap
    began, as `zoneinfo` resolves it; an ambiguous one (autumn) opens at its first
    occurrence.
    """
    if is_open(at, time_zone, window):
        return at.astimezone(UTC)
    zone = ZoneInfo(time_zone)
    local = at.astimezone(zone)
    day = local.date()
    if local.time() >= window.end:
        day += timedelta(days=1)
    opens = datetime.combine(day, window.start, tzinfo=zone).astimezone(UTC)
    # A start inside a gap resolves to an instant whose local time is past the gap; make
    # sure we never answer an instant before `at` (cannot happen, but cheap to guarantee).
    return max(opens, at.astimezone(UTC))


def closes_at(at: datetime, time_zone: str, window: ContactWindow) -> datetime:
    """When the window that `at` falls in closes, in UTC (`at` itself if it is closed).

    A step started inside the window must not reach the client after this instant, however
    long its retries take.
    """
    if not is_open(at, time_zone, window):
        return at.astimezone(UTC)
    zone = ZoneInfo(time_zone)
    day = at.astimezone(zone).date()
    return datetime.combine(day, window.end, tzinfo=zone).astimezone(UTC)


def local_date(at: datetime, time_zone: str) -> date:
    """The client's local calendar day at `at` (for the one-text-a-day rule)."""
    return at.astimezone(ZoneInfo(time_zone)).date()


def local_day(at: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """Start of the client's local day at `at`, and of the next one (in UTC; DST-aware)."""
    zone = ZoneInfo(time_zone)
    day = at.astimezone(zone).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_label(at: datetime, time_zone: str) -> str:
    """`at` as the client reads it, with the zone named: `2026-12-01 10:30 PST (America/...)`."""
    local = at.astimezone(ZoneInfo(time_zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({time_zone})"


def wall_time(local: datetime, time_zone: str) -> datetime:
    """The instant a wall-clock time without an offset names in `time_zone`, if exactly one.

    A time in a spring-forward gap (02:30 on the March change in New York) names no instant
    and one in the autumn overlap names two; guessing either would move a session by an
    hour without a word, so both are refused (ValueError saying which) and the sender is
    asked for the offset. Round-tripping through UTC finds the gap (the time comes back
    different); comparing both folds finds the overlap.
    """
    zone = ZoneInfo(time_zone)
    first = local.replace(tzinfo=zone, fold=0)
    second = local.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local.replace(
            tzinfo=None, fold=0):
        msg = (f"{local:%Y-%m-%d %H:%M} does not exist in {time_zone} (the clocks skip it);"
               " send the time with its UTC offset")
        raise ValueError(msg)
    if first.utcoffset() != second.utcoffset():
        msg = (f"{local:%Y-%m-%d %H:%M} happens twice in {time_zone} (the clocks go back);"
               " send the time with its UTC offset")
        raise ValueError(msg)
    return first
