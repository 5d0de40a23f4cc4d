"""Which channels the worker uses, from the settings.

Calls, voicemail and texts go through the configured channel (the simulated phone, the
practice's signed webhook, or Twilio); email goes through SMTP when `smtp_host` is set,
otherwise through the same channel as texts.
"""

from __future__ import annotations

from missed_session.channels.base import EmailProvider, MessageProvider, Provider, TextProvider
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger, EmailOnce
from missed_session.channels.smtp import SmtpEmailProvider
from missed_session.channels.webhook import WebhookProvider
from missed_session.config import Settings


class RoutedMessages:
    """Texts through one channel, email through another."""

    def __init__(self, texts: TextProvider, email: EmailProvider) -> None:
        self._texts = texts
        self._email = email

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Send through the text channel."""
        await self._texts.send_text(key, session_id, to, text)

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Send through the email channel."""
        await self._email.send_email(key, session_id, to, subject, body)


def channels_from_settings(
    settings: Settings, simulated: Provider, ledger: DeliveryLedger
) -> tuple[Provider, MessageProvider]:
    """(phone channel, message channel) for the worker's outreach activities.

    External channels go through the delivery ledger, so that a worker crash between a
    provider's call and its record never makes a retry reach the person twice.
    """
    phone = simulated
    if settings.channel == "webhook":
        assert settings.webhook_url is not None  # the settings' validator guarantees these
        assert settings.webhook_secret is not None
        phone = AtMostOnce(
            WebhookProvider(
                settings.webhook_url, settings.webhook_secret.get_secret_value().encode()
            ),
            ledger,
        )
    elif settings.channel == "twilio":
        phone = AtMostOnce(_twilio(settings, ledger), ledger)
    if settings.smtp_host is None:
        return phone, phone
    assert settings.smtp_sender_address is not None
    password = settings.smtp_password
    email = SmtpEmailProvider(
        hostname=settings.smtp_host, port=settings.smtp_port,
        sender_address=settings.smtp_sender_address, sender_name=settings.sender_name,
        username=settings.smtp_username,
        password=password.get_secret_value() if password is not None else None,
    )
    return phone, RoutedMessages(phone, EmailOnce(email, ledger))


def _twilio(settings: Settings, ledger: DeliveryLedger) -> Provider:
    # Imported here: the SDK is slow to import and only a Twilio deployment needs it.
    from twilio.http.async_http_client import AsyncTwilioHttpClient  # noqa: PLC0415
    from twilio.rest import Client as TwilioClient  # noqa: PLC0415

    from missed_session.channels.twilio import TwilioProvider  # noqa: PLC0415

    assert settings.twilio_account_sid is not None
    assert settings.twilio_auth_token is not None
    assert settings.twilio_from_number is not None
    client = TwilioClient(
        settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value(),
        # A fresh connection per request: a kept-alive one Twilio had closed would fail
        # after sending and make the step uncertain.
        http_client=AsyncTwilioHttpClient(pool_connections=False),
    )
    # The ledger keeps each call's SID, so a dead worker's call is resumed, not repeated.
    return TwilioProvider(client, from_number=settings.twilio_from_number,
                         callback_number=settings.callback_number, receipts=ledger,
                         status_callback_url=settings.twilio_status_callback_url)
