"""Helpers first written for tests/test_console_live.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from missed_session.store.notices import NoticeStore

PASSWORD = "correct horse battery"


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
[[roster.on_call]]
clinician = "oc-lee"
"""


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

