"""Helpers first written for tests/test_console_accounts.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncpg

from missed_session.domain.roster_file import parse_roster
from missed_session.store.notices import RosterStore

PASSWORD = "a long enough password"


ROSTER = """
[roster]
time_zone = "America/New_York"
accept_coverage_gaps = true
[roster.clinicians.t-ana]
role = "therapist"
sms = "+14155550101"
[roster.clinicians.oc-lee]
role = "on_call_clinician"
sms = "+14155550102"
"""


async def load(pool: asyncpg.Pool, text: str) -> None:
    loaded = parse_roster(text, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")

