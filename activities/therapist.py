"""Activities that record a therapist's notices (alerts and tasks; table `therapist_inbox`)."""

from __future__ import annotations

from temporalio import activity

from missed_session.domain.models import TherapistNotice
from missed_session.store.inbox import InboxStore


class TherapistActivities:
    """The therapist's notices, each written once per notice key."""

    def __init__(self, inbox: InboxStore) -> None:
        self._inbox = inbox

    @activity.defn
    async def notify_therapist(self, notice: TherapistNotice) -> None:
        """Record a notice (alert or task); a retry finds it recorded and does nothing."""
        await self._inbox.add_notice(notice)
