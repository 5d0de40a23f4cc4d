"""The therapist's inbox (`therapist_inbox`): a notice's row, put there once.

A notice is delivered by its own workflow until acknowledged (`workflows/notice.py`); this
row is what the therapist's list shows, keyed by the notice key so that a retried activity
never puts it there twice.
"""

from __future__ import annotations

import asyncpg

from missed_session.domain.models import TherapistNotice


class InboxStore:
    """Puts notices in the therapist's inbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add_notice(self, notice: TherapistNotice) -> bool:
        """Put an alert or task in the therapist's inbox once; False if already there."""
        status = await self._pool.execute(
            "INSERT INTO therapist_inbox (key, session_id, therapist_id, kind, priority, title)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
            notice.key, notice.session_id, notice.therapist_id, notice.kind.value,
            notice.priority.value, notice.title,
        )
        return status.endswith(" 1")
