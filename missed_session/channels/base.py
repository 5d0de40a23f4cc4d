"""The interface every phone channel offers the outreach activities."""

from __future__ import annotations

from typing import Protocol

from missed_session.domain.models import CallResult


class InvalidContactError(ValueError):
    """The number or address does not reach anyone; retrying cannot help."""


class PhoneChannel(Protocol):
    """Places calls and leaves messages.

    Every method takes an idempotency key: a second call with the same key must return the
    first call's result without reaching the person again. That is what makes the outreach
    activities safe to retry.
    """

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring `to` and report whether someone answered."""
        ...

    async def leave_voicemail(self, key: str, session_id: str, to: str, text: str) -> None:
        """Leave `text` as a voicemail at `to`."""
        ...

    async def deliver_message(self, key: str, session_id: str, to: str, text: str) -> None:
        """Call `to` and deliver `text`, by voice or voicemail."""
        ...
