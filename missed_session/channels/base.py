"""The interface every provider offers the outreach activities.

A provider (the simulated phone, the signed webhook, Twilio, SMTP) carries the protocol's
channels (call, voicemail, text, email: `domain.models.Channel`) to a person. Every method
takes an idempotency key: a second call with the same key must return the first call's
result without reaching the person again. That is what makes the outreach activities safe
to retry. A provider's errors say what it answered, because that decides what may happen
next (their `Channel...Error` names are kept: they appear as failure types in stored
workflow histories):

- :class:`InvalidContactError`: the number or address reaches nobody (never retried);
- :class:`ChannelRejectedError`: the provider refused the request itself (never retried);
- :class:`ChannelUnavailableError`: the provider failed *before accepting* the request
  (5xx, connection refused): nothing was delivered, a retry may send; the activity counts
  these against the step;
- :class:`DeliveryUncertainError`: the request may have been accepted (a timeout or a lost
  connection after it was sent; a call placed whose outcome is unknown): never re-sent.

Any other exception (PostgreSQL unreachable, say) is our own infrastructure failing, not
the provider: retried for as long as it lasts, and never counted against the client.
"""

from __future__ import annotations

from typing import Protocol

from missed_session.domain.models import CallResult


class InvalidContactError(ValueError):
    """The number or address does not reach anyone; retrying cannot help."""


class ChannelRejectedError(ValueError):
    """The provider refused the request (a 4xx): retrying the same request cannot help."""


class ChannelUnavailableError(RuntimeError):
    """The provider failed before accepting the request (5xx, refused): a retry may send."""


class DeliveryUncertainError(RuntimeError):
    """The provider may have accepted the request: repeating it could reach the person twice."""


class PhoneProvider(Protocol):
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


class TextProvider(Protocol):
    """Sends texts (SMS)."""

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Send `text` (at most 160 characters) to the number `to`."""
        ...


class EmailProvider(Protocol):
    """Sends email."""

    async def send_email(
        self, key: str, session_id: str, to: str, subject: str, body: str
    ) -> None:
        """Send a plain-text email to `to`."""
        ...


class MessageProvider(TextProvider, EmailProvider, Protocol):
    """Texts and email together (the simulated phone and the webhook offer both)."""


class Provider(PhoneProvider, MessageProvider, Protocol):
    """Everything outreach can do, through one provider."""
