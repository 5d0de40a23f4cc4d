"""Who works at the practice, how to reach them, and who is on call when.

Pure: a roster is data (clinicians with a role and contact channels, an on-call rota in
local times with time zones, leave with optional cover), and the questions asked of it are
functions of the roster and an instant. A notice asks `on_call(roster, t)` at the moment it
climbs to the on-call clinician, never at booking time: the rota that applies is the one in
force when someone must be woken.

Coverage is checked when a roster is loaded: a week with hours nobody covers, or leave that
leaves hours uncovered, is refused with those hours named (`coverage_gaps`), because a
notice that reaches an empty on-call step would climb straight past it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, EmailStr, model_validator

from missed_session.domain.models import AwareDatetime, Model, PhoneNumber, TimeZoneName

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Rota days, in `date.weekday()` order."""
REFERENCE_WEEKS = (date(2026, 1, 5), date(2026, 7, 6))
"""Mondays of a winter and a summer week without clock changes: a rota mixing zones whose
offsets differ by season is checked in both."""


class Role(StrEnum):
    """What a clinician is on the roster for."""

    THERAPIST = "therapist"
    ON_CALL = "on_call_clinician"
    SUPERVISOR = "clinical_supervisor"


class NoticeRoute(StrEnum):
    """How a clinician can be reached with a notice (a route, not a protocol channel)."""

    SMS = "sms"
    VOICE = "voice"
    EMAIL = "email"
    PAGER = "pager"
    """The practice's paging gateway, addressed by a number (sent as a text)."""


def _clinician_id(value: str) -> str:
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        msg = "must be 1-64 letters, digits, '.', '_' or '-'"
        raise ValueError(msg)
    return value


ClinicianId = Annotated[str, AfterValidator(_clinician_id)]


class Clinician(Model):
    """One clinician: a role and the channels a notice reaches them on, in order."""

    id: ClinicianId
    """Staff id (bookings name therapists by it; never a name)."""
    role: Role
    """Therapist, on-call clinician or clinical supervisor."""
    sms: PhoneNumber | None = None
    """Mobile number for texts; also the number an SMS acknowledgment must come from."""
    voice: PhoneNumber | None = None
    """Number for a voice call that reads the notice."""
    email: EmailStr | None = None
    """Work address."""
    pager: PhoneNumber | None = None
    """Paging gateway number."""
    notify_by: tuple[NoticeRoute, ...] = ()
    """Channels a notice uses, in order; empty: every channel given (sms, voice, pager,
    email)."""
    supervisor: ClinicianId | None = None
    """The clinical supervisor a therapist's notices climb to (default: every supervisor)."""

    @model_validator(mode="after")
    def _reachable(self) -> Clinician:
        if not self.channels():
            msg = "needs at least one of sms, voice, email, pager"
            raise ValueError(msg)
        for channel in self.notify_by:
            if self.address(channel) is None:
                msg = f"notify_by names {channel.value} but no address is given"
                raise ValueError(msg)
        return self

    def address(self, channel: NoticeRoute) -> str | None:
        """The clinician's address on `channel`, if any."""
        value: str | None = getattr(self, channel.value)
        return value

    def channels(self) -> tuple[NoticeRoute, ...]:
        """The channels a notice uses for this clinician, in order."""
        if self.notify_by:
            return self.notify_by
        order = (NoticeRoute.SMS, NoticeRoute.VOICE, NoticeRoute.PAGER,
                 NoticeRoute.EMAIL)
        return tuple(channel for channel in order if self.address(channel) is not None)


def _weekday(value: str) -> str:
    if value not in WEEKDAYS:
        msg = f"unknown day {value!r} (days: {', '.join(WEEKDAYS)})"
        raise ValueError(msg)
    return value


class Shift(Model):
    """A weekly on-call shift in local time; `end` at or before `start` ends the next day."""

    clinician: ClinicianId
    """Who is on call."""
    days: tuple[Annotated[str, AfterValidator(_weekday)], ...] = WEEKDAYS
    """The days the shift starts on."""
    start: time = time(0)
    """Local start."""
    end: time = time(0)
    """Local end (00:00 with start 00:00: a whole day)."""
    time_zone: TimeZoneName | None = None
    """The shift's zone; default: the roster's."""


class Leave(Model):
    """A clinician away; `cover` takes their on-call shifts meanwhile."""

    clinician: ClinicianId
    """Who is away."""
    start: AwareDatetime
    """From (inclusive)."""
    end: AwareDatetime
    """Until (exclusive)."""
    cover: ClinicianId | None = None
    """Who covers their on-call shifts during the leave; none: nobody does."""

    @model_validator(mode="after")
    def _ordered(self) -> Leave:
        if self.end <= self.start:
            msg = f"leave of {self.clinician}: end must be after start"
            raise ValueError(msg)
        return self


class Roster(Model):
    """The practice's clinicians and on-call rota."""

    time_zone: TimeZoneName
    """The practice's zone: shifts without their own, and gaps are named in it."""
    clinicians: tuple[Clinician, ...]
    """Everyone a notice may reach."""
    on_call: tuple[Shift, ...] = ()
    """The weekly rota."""
    leave: tuple[Leave, ...] = ()
    """Overrides of the rota."""
    accept_coverage_gaps: bool = False
    """Load even with hours nobody covers (a warning names them)."""

    @model_validator(mode="after")
    def _known_clinicians(self) -> Roster:
        ids = [clinician.id for clinician in self.clinicians]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            msg = f"clinician {duplicate} is listed twice"
            raise ValueError(msg)
        roles = {clinician.id: clinician.role for clinician in self.clinicians}
        for shift in self.on_call:
            if shift.clinician not in roles:
                msg = f"on_call: unknown clinician {shift.clinician!r}"
                raise ValueError(msg)
        for leave in self.leave:
            for who in (leave.clinician, leave.cover):
                if who is not None and who not in roles:
                    msg = f"leave: unknown clinician {who!r}"
                    raise ValueError(msg)
        for clinician in self.clinicians:
            if clinician.supervisor is not None and (
                    roles.get(clinician.supervisor) is not Role.SUPERVISOR):
                msg = (f"clinicians.{clinician.id}: supervisor {clinician.supervisor!r} is not "
                       "a clinical supervisor on the roster")
                raise ValueError(msg)
        return self

    def clinician(self, clinician_id: str) -> Clinician | None:
        """The clinician with this id, if on the roster."""
        return next((c for c in self.clinicians if c.id == clinician_id), None)

    def by_number(self, number: str) -> Clinician | None:
        """The clinician whose SMS number this is (how an SMS acknowledgment is matched)."""
        return next((c for c in self.clinicians if c.sms == number), None)


Interval = tuple[datetime, datetime]


def _zone(roster: Roster, shift: Shift) -> ZoneInfo:
    return ZoneInfo(shift.time_zone or roster.time_zone)


def _shift_intervals(roster: Roster, shift: Shift, start: datetime,
                     end: datetime) -> list[Interval]:
    """The shift's occurrences overlapping [start, end), as UTC instants."""
    zone = _zone(roster, shift)
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    found: list[Interval] = []
    day = first
    while day <= last:
        if WEEKDAYS[day.weekday()] in shift.days:
            begins = datetime.combine(day, shift.start, tzinfo=zone)
            end_day = day if shift.end > shift.start else day + timedelta(days=1)
            ends = datetime.combine(end_day, shift.end, tzinfo=zone)
            begins, ends = begins.astimezone(UTC), ends.astimezone(UTC)
            if begins < end and ends > start:
                found.append((max(begins, start), min(ends, end)))
        day += timedelta(days=1)
    return found


def _subtract(intervals: Iterable[Interval], hole: Interval) -> list[Interval]:
    left: list[Interval] = []
    for begins, ends in intervals:
        if ends <= hole[0] or begins >= hole[1]:
            left.append((begins, ends))
            continue
        if begins < hole[0]:
            left.append((begins, hole[0]))
        if ends > hole[1]:
            left.append((hole[1], ends))
    return left


def _intersect(intervals: Iterable[Interval], window: Interval) -> list[Interval]:
    return [(max(b, window[0]), min(e, window[1])) for b, e in intervals
            if b < window[1] and e > window[0]]


def coverage(roster: Roster, start: datetime, end: datetime) -> list[tuple[str, Interval]]:
    """Who is on call in [start, end): (clinician id, UTC interval), leave and cover applied."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    covered: list[tuple[str, Interval]] = []
    for shift in roster.on_call:
        intervals = _shift_intervals(roster, shift, start, end)
        for leave in roster.leave:
            if leave.clinician != shift.clinician:
                continue
            away = (leave.start.astimezone(UTC), leave.end.astimezone(UTC))
            if leave.cover is not None:
                covered += [(leave.cover, part) for part in _intersect(intervals, away)]
            intervals = _subtract(intervals, away)
        covered += [(shift.clinician, part) for part in intervals]
    for leave in roster.leave:  # cover that is itself on leave covers nothing
        away = (leave.start.astimezone(UTC), leave.end.astimezone(UTC))
        covered = [(who, part) for who, parts in (
            (w, _subtract([p], away) if w == leave.clinician else [p]) for w, p in covered
        ) for part in parts]
    return covered


def _gaps(covered: Sequence[Interval], start: datetime, end: datetime) -> list[Interval]:
    gaps: list[Interval] = []
    cursor = start
    for begins, ends in sorted(covered):
        if begins > cursor:
            gaps.append((cursor, begins))
        cursor = max(cursor, ends)
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


def on_leave(roster: Roster, clinician_id: str, at: datetime) -> bool:
    """Whether the clinician is away at `at`."""
    return any(leave.clinician == clinician_id and leave.start <= at < leave.end
               for leave in roster.leave)


def on_call(roster: Roster, at: datetime) -> tuple[Clinician, ...]:
    """The clinicians on call at instant `at`, in rota order (a cover in place of the absent)."""
    ids: list[str] = []
    for who, (begins, ends) in coverage(roster, at, at + timedelta(seconds=1)):
        if begins <= at < ends and who not in ids:
            ids.append(who)
    return tuple(c for i in ids if (c := roster.clinician(i)) is not None)


def supervisors_for(roster: Roster, therapist_id: str, at: datetime) -> tuple[Clinician, ...]:
    """The therapist's supervisor, or every supervisor, present at `at`."""
    therapist = roster.clinician(therapist_id)
    named = therapist.supervisor if therapist is not None else None
    candidates = [c for c in roster.clinicians if c.role is Role.SUPERVISOR
                  and (named is None or c.id == named)]
    present = [c for c in candidates if not on_leave(roster, c.id, at)]
    if not present and named is not None:  # the named one is away: any supervisor
        present = [c for c in roster.clinicians if c.role is Role.SUPERVISOR
                   and not on_leave(roster, c.id, at)]
    return tuple(present)


def _describe_weekly(gap: Interval, zone: ZoneInfo) -> str:
    begins, ends = gap[0].astimezone(zone), gap[1].astimezone(zone)
    end_day = "" if ends.date() == begins.date() else f"{WEEKDAYS[ends.weekday()]} "
    end_text = f"{end_day}{ends:%H:%M}"
    if ends.time() == time(0) and ends.date() == begins.date() + timedelta(days=1):
        end_text = "24:00"
    return f"{WEEKDAYS[begins.weekday()]} {begins:%H:%M}-{end_text}"


def coverage_gaps(roster: Roster) -> list[str]:
    """Hours nobody is on call, in words: the weekly rota's, then each leave's.

    Weekly gaps are named by day and local time in the roster's zone (`sat 00:00-08:00`);
    gaps a leave opens by their dates (`2026-12-24 00:00-2026-12-27 00:00 (leave of oc-lee)`).
    """
    zone = ZoneInfo(roster.time_zone)
    found: list[str] = []
    for monday in REFERENCE_WEEKS:
        start = datetime.combine(monday, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone).astimezone(UTC)
        weekly = Roster(time_zone=roster.time_zone, clinicians=roster.clinicians,
                        on_call=roster.on_call)
        covered = [part for _, part in coverage(weekly, start, end)]
        for gap in _gaps(covered, start, end):
            text = _describe_weekly(gap, zone)
            if text not in found:
                found.append(text)
    if found:
        return found  # the rota itself has holes: name those, not every leave's share
    for leave in roster.leave:
        start, end = leave.start.astimezone(UTC), leave.end.astimezone(UTC)
        covered = [part for _, part in coverage(roster, start, end)]
        for gap in _gaps(covered, start, end):
            begins, ends = gap[0].astimezone(zone), gap[1].astimezone(zone)
            found.append(f"{begins:%Y-%m-%d %H:%M}-{ends:%Y-%m-%d %H:%M} "
                         f"(leave of {leave.clinician})")
    return found


class CoverageGapError(ValueError):
    """The rota leaves hours with nobody on call."""


def checked(roster: Roster, source: str) -> tuple[Roster, list[str]]:
    """The roster and any warnings; refused when it has gaps it does not accept."""
    gaps = coverage_gaps(roster)
    if gaps and not roster.accept_coverage_gaps:
        msg = (f"{source}: roster.on_call: nobody is on call {'; '.join(gaps)} "
               f"({roster.time_zone}); cover those hours, or set "
               "roster.accept_coverage_gaps = true to load it anyway")
        raise CoverageGapError(msg)
    warnings = [f"{source}: nobody is on call {'; '.join(gaps)} ({roster.time_zone}): "
                "accepted by roster.accept_coverage_gaps; notices skip the on-call step then"
                ] if gaps else []
    return roster, warnings
