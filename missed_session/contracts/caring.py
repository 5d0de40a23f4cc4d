"""One message of a caring-contacts series, and what became of it."""

from __future__ import annotations

from missed_session.domain.caring import EndReason
from missed_session.domain.models import AwareDatetime, Model


class CaringRequest(Model):
    """One message of a series."""

    idempotency_key: str
    """`<series id>/message-<n>`: the same key never reaches the client twice."""
    series_id: str
    """The series (its trail id)."""
    client_ref: str
    """Whose series."""
    index: int
    """Which message (from 0)."""
    since: AwareDatetime
    """When the series started: a session attended after it ends the series."""


class CaringResult(Model):
    """What became of one message."""

    sent: bool = False
    """Whether the provider took it."""
    consent_record: str | None = None
    """The text consent it rested on (None: the practice default)."""
    skipped: str | None = None
    """Why it was not sent, when it was not (no contact details)."""
    end: EndReason | None = None
    """Set when what was found ends the series (nothing was sent)."""
