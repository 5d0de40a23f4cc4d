"""Email through SMTP (`aiosmtplib`).

One plain-text message per step, from the practice's neutral sender address. The step's
idempotency key is the `Message-ID`'s left part, so a receiving system (or a compliance
reviewer) can tie a message to its audit event. SMTP has no idempotency of its own: the
worker wraps this channel in the delivery ledger (`channels/ledger.py`), which sends each
step at most once, across worker restarts too.

A permanent refusal of the recipient (5xx to RCPT, e.g. "550 no such user") is an invalid
contact: the ladder moves on and email is not tried again. A temporary one (4xx), a refused
connection, a timeout or a dropped connection *before the message is handed over* is the
server failing before accepting it: retried (and counted) by the activity. Once the message
body has been sent, only the server's answer to it says whether it was accepted: a timeout
or a dropped connection then may have delivered it (delivery uncertain, never re-sent), a
4xx or 5xx to it was a refusal.
"""

from __future__ import annotations

import contextlib
import hashlib
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import aiosmtplib

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
)


class SmtpEmailProvider:
    """Sends outreach email through an SMTP server."""

    def __init__(
        self,
        *,
        hostname: str,
        port: int,
        sender_address: str,
        sender_name: str,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._hostname = hostname
        self._port = port
        self._sender_address = sender_address
        self._sender_name = sender_name
        self._username = username
        self._password = password
        self._start_tls = start_tls
        self._timeout = timeout_seconds

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Send one plain-text email to `to`."""
        message = EmailMessage()
        message["From"] = formataddr((self._sender_name, self._sender_address))
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        domain = self._sender_address.rpartition("@")[2] or "localhost"
        message["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
        message.set_content(body)
        client = aiosmtplib.SMTP(
            hostname=self._hostname, port=self._port, username=self._username,
            password=self._password, start_tls=self._start_tls, timeout=self._timeout,
        )
        try:
            await self._hand_over(client, message, to)
        finally:
            if client.is_connected:
                client.close()

    async def _hand_over(self, client: aiosmtplib.SMTP, message: EmailMessage,
                         to: str) -> None:
        """Connect, name sender and recipient, then send the message: one transaction."""
        try:
            await client.connect()
            await client.mail(self._sender_address)
            await client.rcpt(to)
        except aiosmtplib.SMTPRecipientRefused as error:
            if 500 <= error.code < 600:
                msg = "the mail server refused the address"
                raise InvalidContactError(msg) from None
            msg = "the mail server deferred the address"
            raise ChannelUnavailableError(msg) from None
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                msg = f"the mail server refused the message (SMTP {error.code})"
                raise ChannelRejectedError(msg) from None
            msg = f"the mail server failed (SMTP {error.code})"
            raise ChannelUnavailableError(msg) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            msg = f"the mail server could not be reached ({type(error).__name__})"
            raise ChannelUnavailableError(msg) from None
        try:
            await client.data(message.as_bytes())
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                msg = f"the mail server refused the message (SMTP {error.code})"
                raise ChannelRejectedError(msg) from None
            msg = f"the mail server failed (SMTP {error.code})"
            raise ChannelUnavailableError(msg) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            msg = ("no answer from the mail server after sending the message "
                   f"({type(error).__name__})")
            raise DeliveryUncertainError(msg) from None
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()  # accepted already: a failed goodbye changes nothing

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """SMTP sends no texts: pair this channel with Twilio or the webhook for those."""
        msg = "the SMTP channel sends no texts"
        raise ChannelRejectedError(msg)
