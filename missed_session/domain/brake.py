"""The mass no-show brake: when many sessions are missed at once, hold client outreach.

A scheduler feed that stops, a front-desk tablet that fails, a video platform that is down:
each makes every session of the hour a no-show at once. The protocol would then call,
voicemail and text every one of those clients (and, for the high-risk ones, their emergency
contacts) within minutes, for sessions most of them attended. So at each no-show the
service compares the no-shows of the recent window with the practice's own baseline; an
unusual share of missed sessions holds automated client outreach for the affected sessions
(their therapists are still alerted) and pages the on-call clinician and the clinical
supervisor once per episode, who release the hold, release it per session, or stand the
sessions down. A high-risk session's hold releases itself after a short limit: the brake
must never silence a real crisis.

Everything here is pure: the settings (the practice file's `[brake]` table), the counts the
store hands in, and the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field

from missed_session.domain.models import FreeText, Model, RiskTier
from missed_session.domain.notices import Policy, Step, Target


class BrakeState(StrEnum):
    """Where a session stands with the brake (recorded: `brake_held` and what ended it)."""

    HELD = "held"
    RELEASED = "released"
    STOOD_DOWN = "stood_down"


class BrakeDecision(Model):
    """A supervisor's decision about a held session (the `brake_decision` signal)."""

    kind: Literal["release", "stand_down"]
    """release: outreach proceeds; stand_down: no client outreach for this session."""
    clinician_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    """Who decided."""
    reason: FreeText = Field(default="", max_length=200)
    """Why, for the trail (no clinical detail)."""
    episode: str | None = None
    """Only sessions held in this episode take it (None: whichever episode holds them)."""


class BrakeSettings(Model):
    """The practice file's `[brake]` table: when no-shows are too many at once.

    Without the table the brake is off: a practice turns it on by choosing its numbers.
    """

    window_minutes: int = Field(default=30, ge=5, le=240)
    """How far back a no-show counts as "together" with the one being decided."""
    min_no_shows: int = Field(default=10, ge=5, le=10_000)
    """Fewer missed sessions in the window never hold: a few no-shows are ordinary."""
    min_share_percent: int = Field(default=50, ge=1, le=100)
    """The share of the window's due sessions that must have been missed."""
    times_baseline: int = Field(default=3, ge=1, le=100)
    """... and at least this many times the practice's usual share of no-shows."""
    baseline_days: int = Field(default=28, ge=1, le=365)
    """The usual share is read over this many days before the window."""
    high_risk_release_minutes: int = Field(default=15, ge=1, le=120)
    """A high-risk session's hold releases itself after this long: no crisis waits longer."""
    release_minutes: int = Field(default=240, ge=5, le=1440)
    """Any other session's hold releases itself after this long, if nobody decided."""

    def release_after(self, risk: RiskTier) -> int:
        """Minutes until a hold on a session of `risk` releases itself."""
        return self.high_risk_release_minutes if risk is RiskTier.HIGH else self.release_minutes

    @property
    def window(self) -> timedelta:
        """The window, as a duration."""
        return timedelta(minutes=self.window_minutes)


@dataclass(frozen=True)
class Counts:
    """Sessions due in a span (their grace period passed in it), and how many were missed."""

    missed: int
    """Due sessions without a check-in (and not cancelled)."""
    due: int
    """Sessions whose grace period passed in the span."""

    @property
    def share(self) -> float:
        """The missed share (0 when nothing was due)."""
        return self.missed / self.due if self.due else 0.0


def holds(window: Counts, baseline: Counts, settings: BrakeSettings) -> bool:
    """Whether the no-shows of `window` are a mass no-show against `baseline`.

    Three tests, all needed: enough missed sessions that it cannot be an ordinary morning;
    a large share of what was due, so a busy hour with its usual few no-shows does not trip
    it; and well above the practice's own usual share, so a practice whose clients often
    miss is judged against itself (a window where every due session was missed is always
    well above a usual share below one). Monotonic in the missed count: more missed sessions in
    the same window never release a hold.
    """
    if window.missed < settings.min_no_shows:
        return False
    share, usual = window.share, baseline.share
    return (share * 100 >= settings.min_share_percent and share > usual
            and share >= min(1.0, usual * settings.times_baseline))


def likely_cause(missed: int, window_minutes: int, modality: str = "") -> str:
    """What the page says: the count, the window and the question a supervisor asks first.

    `modality`: set when one modality's sessions alone were missed together (telehealth:
    the video platform is the first suspect).
    """
    which = f"{modality.replace('_', '-')} " if modality else ""
    suspect = "a video platform" if modality == "telehealth" else "a scheduler"
    return (f"{missed} {which}sessions missed within {window_minutes} minutes: {suspect} or "
            "check-in outage?")


def page_title(missed: int, window_minutes: int, episode: str, modality: str = "") -> str:
    """The supervisor's notice: the count, the likely cause, and what to do about it."""
    return (f"{likely_cause(missed, window_minutes, modality)} Automated client outreach is held "
            f"(brake episode {episode}; therapists are still alerted). Release it, release "
            "per session, or stand them down: starter.py brake status|release|stand-down")


def supervisor_ladder(policy: Policy) -> Policy:
    """The practice's ladder for the page, without its therapist rungs.

    The page is about the practice, not one therapist's client: it goes to whoever is on
    call and to the clinical supervisor, who can judge an outage and decide for everyone.
    """
    steps = tuple(step for step in policy.steps if step.notify is not Target.THERAPIST)
    if not steps:
        steps = (Step(notify=Target.ON_CALL, minutes=10),
                 Step(notify=Target.SUPERVISOR, minutes=15))
    return policy.model_copy(update={"name": f"{policy.name}-brake"[:40], "steps": steps})
