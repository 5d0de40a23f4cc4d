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
from pydantic import AwareDatetime, Field
from temporalio import activity

from missed_session.domain import brake
from missed_session.domain.brake import BrakeSettings
from missed_session.domain.models import Modality, Model, RiskTier
from missed_session.store.brake import BrakeStore


class BrakeCheck(Model):
    """A session whose grace period just passed asks whether the brake holds it."""

    session_id: str
    """The session asking."""
    risk_tier: RiskTier
    """Its risk tier: a high-risk hold releases itself sooner."""
    modality: Modality = Modality.IN_PERSON
    """Its modality: the sessions of one modality are also judged on their own."""
    start: AwareDatetime
    """Its start: sessions that started in the window before it count with it."""
    at: AwareDatetime
    """When its grace period passed (the workflow's clock)."""
    time_scale: float = Field(default=1.0, ge=1.0)
    """The booking's time scale (demos): the window shrinks with the protocol."""


class BrakeVerdict(Model):
    """Whether the session is held, and what its trail and the page say if it is."""

    episode: str | None = None
    """The episode holding it; None: not held, outreach goes on."""
    paged: bool = False
    """This session opened the episode: it pages the supervisor (once per episode)."""
    no_shows: int = 0
    """Missed sessions in the window (as the episode opened, for the page)."""
    due: int = 0
    """Sessions due in the window when this one asked."""
    window_minutes: int = 0
    """The practice's window."""
    modality: str = ""
    """Set when the session's modality alone held it (its sessions missed together)."""
    release_after_minutes: int = 0
    """When the hold releases itself, in practice minutes (the workflow scales them)."""


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
