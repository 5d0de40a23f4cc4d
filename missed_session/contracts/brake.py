"""The mass no-show brake's question at a no-show, and its answer (a local activity)."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from missed_session.domain.models import Modality, Model, RiskTier


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
