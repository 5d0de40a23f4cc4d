"""The SMTP email channel against a real local SMTP server (aiosmtpd, 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
)
from missed_session.channels.ledger import DeliveryLedger, EmailOnce
from missed_session.channels.smtp import SmtpEmailProvider
from missed_session.domain.messages import email

SENDER = "hello@example.net"


class Mailbox:
    """Accepts mail, except for the addresses scripted to bounce or to be deferred."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], Message]] = []
        self.data_answer: str | None = None
        """Answer DATA with this (e.g. "451 ...") instead of accepting."""
        self.hang_after_data = False
        """Keep the message, then never answer (the "250" is lost)."""

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 No such user"
        if address.startswith("later@"):
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802
                          envelope: Envelope) -> str:
        if self.data_answer is not None:
            return self.data_answer
        content = envelope.content
        assert isinstance(content, bytes)
        self.received.append(
            (str(envelope.mail_from), list(envelope.rcpt_tos), message_from_bytes(content))
        )
        if self.hang_after_data:
            await asyncio.sleep(30)
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def channel(port: int, **options: Any) -> SmtpEmailProvider:
    settings: dict[str, Any] = {"timeout_seconds": 5, **options}
    return SmtpEmailProvider(hostname="127.0.0.1", port=port, sender_address=SENDER,
                            sender_name="Alex at the front desk", start_tls=False,
                            **settings)


async def test_the_email_arrives_plain_discreet_and_once(
    smtp_server: tuple[Mailbox, int], pool: asyncpg.Pool
) -> None:
    mailbox, port = smtp_server
    subject, body = email("Robin", "Alex at the front desk", "+15555550100")
    smtp = EmailOnce(channel(port), DeliveryLedger(pool))  # as the worker wires it

    await smtp.send_email("session-s1/attempt-1/email", "s1", "robin@example.org", subject, body)
    await smtp.send_email("session-s1/attempt-1/email", "s1", "robin@example.org", subject, body)

    ((mail_from, rcpt_tos, message),) = mailbox.received
    assert (mail_from, rcpt_tos) == (SENDER, ["robin@example.org"])
    assert message["From"] == f"Alex at the front desk <{SENDER}>"
    assert message["Subject"] == subject
    assert message["Message-ID"].endswith("@example.net>")
    assert message.get_content_type() == "text/plain"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.decode().splitlines() == body.splitlines()


async def test_a_refused_address_is_an_invalid_contact(smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp_server
    with pytest.raises(InvalidContactError):
        await channel(port).send_email("k", "s1", "bounce@example.org", "s", "b")
    assert mailbox.received == []


async def test_a_deferred_address_is_an_outage(smtp_server: tuple[Mailbox, int]) -> None:
    _, port = smtp_server
    with pytest.raises(ChannelUnavailableError):
        await channel(port).send_email("k", "s1", "later@example.org", "s", "b")


async def test_no_server_is_an_outage() -> None:
    with pytest.raises(ChannelUnavailableError):
        await channel(free_port()).send_email("k", "s1", "robin@example.org", "s", "b")


async def test_smtp_sends_no_texts() -> None:
    with pytest.raises(ChannelRejectedError):
        await channel(1).send_text("k", "s1", "+14155550123", "Hi")


@pytest.mark.parametrize(("answer", "error"), [
    ("451 4.3.0 Local problem, try later", ChannelUnavailableError),
    ("554 5.6.0 Message refused", ChannelRejectedError),
])
async def test_an_answer_to_the_message_says_it_was_not_accepted(
    smtp_server: tuple[Mailbox, int], answer: str, error: type[Exception],
) -> None:
    mailbox, port = smtp_server
    mailbox.data_answer = answer
    with pytest.raises(error):
        await channel(port).send_email("k", "s1", "robin@example.org", "s", "b")


async def test_no_answer_after_the_message_is_uncertain_and_not_sent_again(
    smtp_server: tuple[Mailbox, int], pool: asyncpg.Pool
) -> None:
    mailbox, port = smtp_server
    mailbox.hang_after_data = True
    smtp = EmailOnce(channel(port, timeout_seconds=0.5), DeliveryLedger(pool))
    with pytest.raises(DeliveryUncertainError):
        await smtp.send_email("session-s1/attempt-1/email", "s1", "robin@example.org", "s", "b")
    mailbox.hang_after_data = False
    with pytest.raises(DeliveryUncertainError):  # the retry: the server did take it
        await smtp.send_email("session-s1/attempt-1/email", "s1", "robin@example.org", "s", "b")
    assert len(mailbox.received) == 1


async def test_a_deferral_releases_the_step_for_a_retry(
    smtp_server: tuple[Mailbox, int], pool: asyncpg.Pool
) -> None:
    mailbox, port = smtp_server
    mailbox.data_answer = "451 4.3.0 Local problem, try later"
    smtp = EmailOnce(channel(port), DeliveryLedger(pool))
    with pytest.raises(ChannelUnavailableError):
        await smtp.send_email("session-s1/attempt-1/email", "s1", "robin@example.org", "s", "b")
    mailbox.data_answer = None
    await smtp.send_email("session-s1/attempt-1/email", "s1", "robin@example.org", "s", "b")
    assert len(mailbox.received) == 1
