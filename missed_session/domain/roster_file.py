"""The roster and notice rules in a practice's TOML file, validated like its protocols.

```toml
[roster]
time_zone = "America/New_York"      # the rota's zone (a shift may name its own)
accept_coverage_gaps = false        # true: load a rota with uncovered hours, with a warning

[roster.clinicians.t-ana]
role = "therapist"                  # therapist | on_call_clinician | clinical_supervisor
sms = "+14155550101"                # also: voice, email, pager; notify_by = ["sms", ...]
supervisor = "s-maya"

[[roster.on_call]]
clinician = "oc-lee"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:00"
end = "20:00"                       # at or before start: ends the next day

[[roster.leave]]
clinician = "oc-lee"
start = 2026-12-24T00:00:00-05:00
end = 2026-12-27T00:00:00-05:00
cover = "oc-kim"

[notices]
include_first_name = false
ack_code_hours = 24

[[notices.policies]]                # first match wins; the last must match everything
name = "high-risk"
risk_tiers = ["high"]
steps = [{ notify = "therapist", minutes = 5 }, { notify = "on_call", minutes = 5 },
         { notify = "supervisor", minutes = 10 }]
then = "stop"                       # or "repeat", with repeats = 1-5
```

Errors name the file, the key and the rule (`practice.toml: roster.clinicians.t-ana.sms:
must be an E.164 phone number ...`); a rota with hours nobody covers is refused naming them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from missed_session.domain.notices import NoticeSettings
from missed_session.domain.practice import PracticeFileError
from missed_session.domain.roster import (
    Clinician,
    CoverageGapError,
    Leave,
    Roster,
    Shift,
    checked,
)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PracticeRoster:
    """What a practice file says about clinicians and notices."""

    roster: Roster | None
    """The clinicians and rota; None when the file has no `[roster]` (inbox only)."""
    notices: NoticeSettings
    """The notice rules (the built-in ones when the file has no `[notices]`)."""
    warnings: list[str] = field(default_factory=list)
    """Accepted problems (coverage gaps the file accepts), to be shown to the operator."""


def parse_roster(text: str, source: str) -> PracticeRoster:
    """The `[roster]` and `[notices]` of a practice file's text; `source` names it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PracticeFileError(f"{source}: not valid TOML: {error}") from None
    notices = _validate(NoticeSettings, data.get("notices", {}), source, "notices")
    table = data.get("roster")
    if table is None:
        return PracticeRoster(None, notices)
    if not isinstance(table, dict):
        raise PracticeFileError(f"{source}: roster: must be a table")
    roster = _roster(table, source)
    try:
        roster, warnings = checked(roster, source)
    except CoverageGapError as error:
        raise PracticeFileError(str(error)) from None
    return PracticeRoster(roster, notices, warnings)


def _roster(table: Mapping[str, Any], source: str) -> Roster:
    allowed = {"time_zone", "accept_coverage_gaps", "clinicians", "on_call", "leave"}
    for key in table:
        if key not in allowed:
            raise PracticeFileError(f"{source}: roster.{key}: unknown setting")
    people = table.get("clinicians")
    if not isinstance(people, dict) or not people:
        raise PracticeFileError(f"{source}: roster.clinicians: at least one clinician is required")
    clinicians = tuple(
        _validate(Clinician, {"id": cid, **_table(entry, source, f"roster.clinicians.{cid}")},
                  source, f"roster.clinicians.{cid}")
        for cid, entry in people.items()
    )
    shifts = tuple(_validate(Shift, entry, source, f"roster.on_call[{i}]")
                   for i, entry in enumerate(_array(table.get("on_call", []), source,
                                                    "roster.on_call")))
    leave = tuple(_validate(Leave, entry, source, f"roster.leave[{i}]")
                  for i, entry in enumerate(_array(table.get("leave", []), source,
                                                   "roster.leave")))
    return _validate(Roster, {
        "time_zone": table.get("time_zone", "UTC"),
        "accept_coverage_gaps": table.get("accept_coverage_gaps", False),
        "clinicians": clinicians, "on_call": shifts, "leave": leave,
    }, source, "roster")


def _table(value: Any, source: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PracticeFileError(f"{source}: {key}: must be a table")
    return value


def _array(value: Any, source: str, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise PracticeFileError(f"{source}: {key}: must be an array of tables ([[{key}]])")
    return value


def _validate(model: type[M], data: Any, source: str, key: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join([key, *(str(part) for part in first["loc"])])
        rule = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            rule = "unknown setting"
        raise PracticeFileError(f"{source}: {where}: {rule}") from None
