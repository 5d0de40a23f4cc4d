"""Choosing the worker's channels from the settings, and refusing incomplete ones."""

from __future__ import annotations

from typing import Any

import pytest

from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.setup import RoutedMessages, channels_from_settings
from missed_session.channels.smtp import SmtpEmailProvider
from missed_session.channels.twilio import TwilioProvider
from missed_session.channels.webhook import WebhookProvider
from missed_session.config import ConfigurationError, load_settings
from missed_session.domain.models import CallResult


class Simulated:
    """Stands in for the simulated phone (which needs a database) in these pure checks."""

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        return CallResult.NO_ANSWER

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        return CallResult.ANSWERED

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        return CallResult.ANSWERED

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        return None

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        return None


LEDGER = DeliveryLedger(None)  # type: ignore[arg-type]  # never reached in these checks


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSR_CONFIG_FILE", raising=False)


def settings(**values: Any) -> Any:
    return load_settings(**values)


def test_the_simulated_phone_is_the_default() -> None:
    simulated = Simulated()
    assert channels_from_settings(settings(), simulated, LEDGER) == (simulated, simulated)


async def test_webhook_with_smtp_for_email() -> None:
    phone, messages = channels_from_settings(settings(
        channel="webhook", webhook_url="http://127.0.0.1:1/outreach", webhook_secret="s3cret",
        smtp_host="127.0.0.1", smtp_sender_address="hello@example.net",
    ), Simulated(), LEDGER)
    assert isinstance(phone, AtMostOnce)
    assert isinstance(phone.inner, WebhookProvider)
    assert isinstance(messages, RoutedMessages)
    assert isinstance(messages._email.inner, SmtpEmailProvider)  # type: ignore[attr-defined]
    assert messages._texts is phone
    await phone.inner.close()


async def test_twilio() -> None:
    phone, messages = channels_from_settings(settings(
        channel="twilio", twilio_account_sid="AC" + "0" * 32, twilio_auth_token="t",
        twilio_from_number="+15555550100",
    ), Simulated(), LEDGER)
    assert isinstance(phone, AtMostOnce)
    assert isinstance(phone.inner, TwilioProvider)
    assert messages is phone
    assert phone.inner._receipts is LEDGER  # each SID is kept: a dead worker's call resumes
    assert phone.inner._status_callback is None  # polling only, unless configured
    await phone.inner._client.http_client.close()


async def test_twilio_with_status_callbacks() -> None:
    url = "https://api.example.org/inbound/twilio/calls"
    phone, _ = channels_from_settings(settings(
        channel="twilio", twilio_account_sid="AC" + "0" * 32, twilio_auth_token="t",
        twilio_from_number="+15555550100", twilio_status_callback_url=url,
    ), Simulated(), LEDGER)
    assert isinstance(phone, AtMostOnce)
    assert isinstance(phone.inner, TwilioProvider)
    assert phone.inner._status_callback == url
    await phone.inner._client.http_client.close()


@pytest.mark.parametrize(("values", "message"), [
    ({"channel": "webhook", "webhook_url": "http://x"},
     "setting webhook_secret is required with channel 'webhook'"),
    ({"channel": "twilio", "twilio_account_sid": "AC1", "twilio_auth_token": "t"},
     "setting twilio_from_number is required with channel 'twilio'"),
    ({"smtp_host": "mail.example.net"}, "setting smtp_sender_address is required with smtp_host"),
    ({"channel": "pager"}, "setting channel: Input should be"),
])
def test_incomplete_channel_settings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        settings(**values)
    assert str(refused.value).startswith(message), str(refused.value)
