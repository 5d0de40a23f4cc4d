"""The brake's one question at a no-show: is this session held? (a local activity).

It runs between the grace period's end and the first outreach attempt, so it must be cheap
for the ordinary no-show: with the brake off it answers at once, and otherwise one indexed
count over the window decides, for almost every no-show, that nothing is held. Only a
window with enough missed sessions reads the baseline, judges the practice and then the
session's modality alone (a video platform down while the rooms are full), and joins (or
opens) the episode.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from temporalio import activity

from missed_session.contracts.brake import BrakeCheck, BrakeVerdict
from missed_session.domain import brake
from missed_session.domain.brake import BrakeSettings
from missed_session.store.brake import BrakeStore

__all__ = [
    "BrakeActivities",
    "BrakeCheck",
    "BrakeVerdict",
]
"""The activities, and the payloads they take and return (defined in `contracts`)."""


class BrakeActivities:
    """The brake, with the practice's settings (None: the brake is off)."""

    def __init__(self, pool: asyncpg.Pool, settings: BrakeSettings | None) -> None:
        self._store = BrakeStore(pool)
        self._settings = settings

    @activity.defn
    async def brake_check(self, check: BrakeCheck) -> BrakeVerdict:
        """Held or not; a retry answers the same (the episode remembers who opened it)."""
        settings = self._settings
        if settings is None:
            return BrakeVerdict()
        window = settings.window / check.time_scale
        window_counts = await self._store.counts(check.start - window, check.start)
        if window_counts.missed < settings.min_no_shows:
            return BrakeVerdict()  # the ordinary no-show: one count, nothing held
        span = timedelta(days=settings.baseline_days) / check.time_scale
        baseline = await self._store.counts(check.start - window - span, check.start - window)
        modality = ""
        if not brake.holds(window_counts, baseline, settings):
            # All telehealth sessions missed while the rooms are full: one modality's outage.
            window_counts = await self._store.counts_of(check.start - window, check.start,
                                                        check.modality.value)
            if not brake.holds(window_counts, baseline, settings):
                return BrakeVerdict()
            modality = check.modality.value
        hold = await self._store.hold(
            session_id=check.session_id, risk_tier=check.risk_tier.value, at=check.at,
            counts=window_counts, window_minutes=settings.window_minutes,
            current_for=max(settings.window, timedelta(minutes=settings.release_minutes))
            / check.time_scale, window=window,
        )
        if hold is None:
            return BrakeVerdict()
        return BrakeVerdict(
            episode=hold.episode, paged=hold.paged, no_shows=hold.no_shows,
            due=window_counts.due, window_minutes=hold.window_minutes,
            release_after_minutes=settings.release_after(check.risk_tier), modality=modality,
        )
