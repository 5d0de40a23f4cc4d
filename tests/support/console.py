"""What the console's tests share: the practice's clinicians, a roster of some of them, and a
password every test account uses.

The console tests (accounts, live updates, the long poll, people, the browser walks) and the
API tests that sign in as a clinician each need a roster of a few of the same four people;
`roster` writes it, `load` puts it in force, and `notice` gives a clinician something to see.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import asyncpg

from missed_session.application import console as cases
from missed_session.application.service import Application
from missed_session.config import Settings
from missed_session.domain.roster_file import parse_roster
from missed_session.store.notices import NoticeStore, RosterStore
from tests.support.servers import TEST_KEYS

PASSWORD = "a long enough password"
"""Every test account's password (long enough for the console's rule)."""

CLINICIANS = {
    "t-ana": ("therapist", "+14155550101"),
    "oc-lee": ("on_call_clinician", "+14155550102"),
    "t-bo": ("therapist", "+14155550103"),
    "s-maya": ("clinical_supervisor", "+14155550104"),
}
"""The practice's people: roster id -> (role, SMS number)."""


def roster(*clinicians: str, on_call: str | None = None,
           supervisors: Mapping[str, str] | None = None) -> str:
    """A practice file's roster of `clinicians` (in that order), in New York time.

    `on_call`: who is on call (always); `supervisors`: a clinician's clinical supervisor.
    """
    lines = ["[roster]", 'time_zone = "America/New_York"', "accept_coverage_gaps = true"]
    for clinician in clinicians:
        role, sms = CLINICIANS[clinician]
        lines += ["", f"[roster.clinicians.{clinician}]", f'role = "{role}"', f'sms = "{sms}"']
        if supervisors and clinician in supervisors:
            lines.append(f'supervisor = "{supervisors[clinician]}"')
    if on_call is not None:
        lines += ["", "[[roster.on_call]]", f'clinician = "{on_call}"']
    return "\n".join(lines) + "\n"


ROSTER = roster("t-ana", "oc-lee")
"""A therapist and an on-call clinician: enough for an account, a token and a notice."""
ON_CALL_ROSTER = roster("t-ana", "oc-lee", on_call="oc-lee")
"""The same, with the on-call clinician on call (a notice's ladder climbs to them)."""


async def load(pool: asyncpg.Pool, text: str) -> None:
    """Put the roster `text` in force, as `starter.py roster load` does."""
    loaded = parse_roster(text, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")


async def accounts(application: Application, *clinicians: str) -> None:
    """A console account with `PASSWORD` for each of `clinicians`."""
    for clinician in clinicians:
        assert (await cases.set_password(application, clinician, PASSWORD)).ok


async def console_application(pool: asyncpg.Pool, roster_text: str,
                              *clinicians: str) -> Application:
    """The roster in force, an application on `pool`, and the clinicians' accounts."""
    await load(pool, roster_text)
    application = Application(Settings(encryption_keys=TEST_KEYS), pool=pool)
    await accounts(application, *clinicians)
    return application


async def notice(pool: asyncpg.Pool, session_id: str, name: str, *, kind: str,
                 priority: str, title: str, opened: datetime) -> str:
    """A notice sent to t-ana, as the notice workflow's activities would record it."""
    key = f"{session_id}/{name}"
    store = NoticeStore(pool)
    await store.opened(key=key, session_id=session_id, therapist_id="t-ana", kind=kind,
                       priority=priority, risk_tier="high", policy="high-risk", at=opened)
    await store.issued(notice_key=key, clinician_id="t-ana", code_hash=f"hash-{key}",
                       issued_at=opened, expires_at=opened + timedelta(hours=24))
    await pool.execute(
        "INSERT INTO therapist_inbox (key, session_id, therapist_id, kind, priority, title)"
        " VALUES ($1, $2, 't-ana', $3, $4, $5)", key, session_id, kind, priority, title)
    return key
