"""Activities that put alerts and tasks in the therapist's inbox."""

from __future__ import annotations

from temporalio import activity

from missed_session.domain.models import TherapistNotice
from missed_session.store.audit import AuditStore


class TherapistActivities:
    """The therapist's inbox, written once per notice key."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    @activity.defn
    async def notify_therapist(self, notice: TherapistNotice) -> None:
        """Deliver an alert or task; a retry finds it delivered and does nothing."""
        await self._store.add_notice(notice)
