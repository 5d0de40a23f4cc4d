"""Pieces the Cal.com and Calendly translators share: times, hashes and modality."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from missed_session.domain.models import Modality
from missed_session.intake.fields import IncompleteError

VIDEO_WORDS = ("video", "zoom", "meet", "teams", "daily", "webex", "gotomeeting",
               "conference", "whereby", "jitsi")


def body_key(body: bytes) -> str:
    """A webhook's delivery identity: the hash of its body.

    Neither scheduler sends a delivery id, and a retried delivery is byte-identical (its
    own timestamp is in the signature header, not the body).
    """
    return hashlib.sha256(body).hexdigest()


def instant(value: Any, where: str) -> datetime:
    """An ISO 8601 time with its offset ('Z' included), or IncompleteError naming `where`."""
    if not isinstance(value, str) or not value:
        msg = f"{where}: missing"
        raise IncompleteError(msg)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{where}: not an ISO 8601 time"
        raise IncompleteError(msg) from None
    if parsed.tzinfo is None:
        msg = f"{where}: the time has no UTC offset"
        raise IncompleteError(msg)
    return parsed


def optional_instant(value: Any) -> datetime | None:
    """Like `instant`, None when absent or unreadable (for message times)."""
    try:
        return instant(value, "time")
    except IncompleteError:
        return None


def modality(*hints: Any) -> Modality:
    """Telehealth when the location or its type names a video service."""
    text = " ".join(str(hint).lower() for hint in hints if hint)
    return Modality.TELEHEALTH if any(word in text for word in VIDEO_WORDS) else (
        Modality.IN_PERSON)


def minutes_between(start: datetime, end: Any) -> int | None:
    """The planned length in minutes, when the end is readable."""
    finish = optional_instant(end)
    return int((finish - start).total_seconds() // 60) if finish is not None else None
