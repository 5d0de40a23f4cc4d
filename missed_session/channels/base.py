"""The interface every channel offers the outreach activities.

A channel reaches a person by phone (calls, voicemail, texts) or email. Every method takes
an idempotency key: a second call with the same key must return the first call's result
without reaching the person again. That is what makes the outreach activities safe to
retry. Errors say whether retrying can help: :class:`InvalidContactError` (the number or
address reaches nobody) and :class:`ChannelRejectedError` (the provider refused the request
itself) never can; anything else is an outage, retried by the activity's policy.
"""

from __future__ import annotations

from typing import Protocol

from missed_session.domain.models import CallResult


class InvalidContactError(ValueError):
    """The number or address does not reach anyone; retrying cannot help."""


class ChannelRejectedError(ValueError):
    """The provider refused the request (a 4xx): retrying the same request cannot help."""


class ChannelUnavailableError(RuntimeError):
    """The provider did not answer or failed (timeout, 5xx): a later retry may succeed."""


class PhoneChannel(Protocol):
    """Places calls and leaves messages."""

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring `to` and report whether someone answered."""
        ...

    async def leave_voicemail(
        self, key: str, session_id: str, to: str, text: str
    ) -> CallResult:
        """Leave `text` as a voicemail at `to`: ANSWERED once the provider confirms it."""
        ...

    async def deliver_message(
        self, key: str, session_id: str, to: str, text: str
    ) -> CallResult:
        """Call `to` and deliver `text` by voice or voicemail: ANSWERED once confirmed."""
        ...


class TextChannel(Protocol):
    """Sends texts (SMS)."""

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Send `text` (at most 160 characters) to the number `to`."""
        ...


class EmailChannel(Protocol):
    """Sends email."""

    async def send_email(
        self, key: str, session_id: str, to: str, subject: str, body: str
    ) -> None:
        """Send a plain-text email to `to`."""
        ...


class MessageChannel(TextChannel, EmailChannel, Protocol):
    """Texts and email together (the simulated phone and the webhook offer both)."""


class Channel(PhoneChannel, MessageChannel, Protocol):
    """Everything outreach can do, through one provider."""
