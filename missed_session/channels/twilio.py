"""Calls, voicemail and texts through Twilio, with the official `twilio` SDK.

A call rings the client with answering-machine detection; when a person answers, the TwiML
connects them to the practice's call-back number, so the first voice they hear is the
practice's. The channel then polls the call until it is answered or over. A voicemail
(and the emergency contact's message) is a call whose TwiML says the text, played after
the beep when a machine answers. A text is one SMS. Email is not Twilio's: the worker
pairs this channel with SMTP for that.

A voicemail or message call counts as delivered only when Twilio reports the call
`completed` (the message was played to a person or after the beep); busy, no-answer and
canceled are NO_ANSWER (not delivered), failed an invalid contact.

Twilio has no idempotency keys: the worker wraps this channel in the delivery ledger
(`channels/ledger.py`), which delivers each step at most once, across restarts too. What
Twilio's answers mean for that:

- creating a call or message: a 5xx or 429, a refused connection or a connection not made
  in time means nothing was created (a retry may send); a timeout or a dropped connection
  after the request was sent may have created it (delivery uncertain);
- once a call exists, its outcome is polled; a poll that fails is tried again (with
  backoff) until the polling deadline, after which the step is uncertain: the call was
  placed, its outcome is unknown, and it is never placed again.

The SDK logs requests and responses (numbers included) at INFO: its loggers are capped at
WARNING here, because no phone number may reach the logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient
from twilio.twiml.voice_response import VoiceResponse

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
)
from missed_session.domain.models import CallResult

logging.getLogger("twilio").setLevel(logging.WARNING)

INVALID_CONTACT_CODES = frozenset({
    13224,  # invalid phone number for a call
    21211,  # invalid 'To' phone number
    21214,  # 'To' number cannot be reached
    21217,  # phone number does not appear to be valid
    21401,  # invalid phone number
    21407,  # number not supported by the account's region
    21614,  # 'To' number is not a valid mobile number (texts)
})
"""Twilio error codes meaning "this number reaches nobody"."""
OPTED_OUT_CODE = 21610
"""The recipient replied STOP to this sender: Twilio refuses further texts."""

ANSWERED_STATUSES = frozenset({"in-progress", "completed"})
UNANSWERED_STATUSES = frozenset({"no-answer", "busy", "canceled"})
MACHINE_ANSWERS = frozenset({
    "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax",
})


class TwilioChannel:
    """The phone and text channel through Twilio's REST API."""

    def __init__(
        self,
        client: TwilioClient,
        *,
        from_number: str,
        callback_number: str,
        ring_seconds: int = 30,
        poll_seconds: float = 2.0,
        max_polls: int = 90,
        request_timeout_seconds: float = 20.0,
    ) -> None:
        self._client = client
        self._from = from_number
        self._callback = callback_number
        self._ring_seconds = ring_seconds
        self._poll_seconds = poll_seconds
        self._max_polls = max_polls
        self._request_timeout = request_timeout_seconds

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring `to`; a person who answers is connected to the practice."""
        connect = VoiceResponse()
        connect.dial(self._callback)
        sid = await self._create_call(to, str(connect), machine_detection="Enable")
        return await self._outcome(sid, _call_outcome)

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Call `to` and say `text` (after the beep, if a machine answers)."""
        return await self._say(to, text)

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Call `to` and deliver `text` by voice or voicemail (the emergency contact)."""
        return await self._say(to, text)

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Send one SMS."""
        await self._create(self._client.messages.create_async(
            to=to, from_=self._from, body=text,
        ))

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Twilio sends no email: pair this channel with SMTP."""
        msg = "the Twilio channel sends no email"
        raise ChannelRejectedError(msg)

    async def _say(self, to: str, text: str) -> CallResult:
        """Place the message call, then wait for Twilio to say how it ended."""
        message = VoiceResponse()
        message.say(text)
        sid = await self._create_call(to, str(message), machine_detection="DetectMessageEnd")
        return await self._outcome(sid, _message_outcome)

    async def _create_call(self, to: str, twiml: str, *, machine_detection: str) -> str:
        call = await self._create(self._client.calls.create_async(
            to=to, from_=self._from, twiml=twiml, timeout=self._ring_seconds,
            machine_detection=machine_detection,
        ))
        sid: str = call.sid
        return sid

    async def _outcome(self, sid: str, read: Callable[[Any], CallResult | None]) -> CallResult:
        """Poll the call until `read` finds it over; failed polls are tried again."""
        problem = "it was still in progress"
        for poll in range(self._max_polls):
            if poll:
                await asyncio.sleep(self._poll_seconds)
            try:
                call = await self._request(self._client.calls(sid).fetch_async())
            except TwilioRestException as error:
                problem = f"Twilio answered HTTP {error.status}"
                continue
            except (TimeoutError, aiohttp.ClientError) as error:
                problem = f"Twilio could not be reached ({type(error).__name__})"
                continue
            if call.status == "failed":
                msg = "the call failed: the number reaches nobody"
                raise InvalidContactError(msg)
            result = read(call)
            if result is not None:
                return result
        msg = f"the call was placed but its outcome is unknown (last poll: {problem})"
        raise DeliveryUncertainError(msg)

    async def _create(self, request: Awaitable[Any]) -> Any:
        """Await one create request, saying whether Twilio may have accepted it."""
        try:
            return await self._request(request)
        except TwilioRestException as error:
            raise _translate(error) from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            msg = f"Twilio could not be reached ({type(error).__name__})"
            raise ChannelUnavailableError(msg) from None
        except (TimeoutError, aiohttp.ClientError) as error:
            msg = f"no answer from Twilio after sending the request ({type(error).__name__})"
            raise DeliveryUncertainError(msg) from None

    async def _request(self, request: Awaitable[Any]) -> Any:
        async with asyncio.timeout(self._request_timeout):
            return await request


def _call_outcome(call: Any) -> CallResult | None:
    """A client's call: answered by a person, or over without one (None: still going)."""
    if call.status in UNANSWERED_STATUSES:
        return CallResult.NO_ANSWER
    if call.status in ANSWERED_STATUSES:
        return CallResult.NO_ANSWER if call.answered_by in MACHINE_ANSWERS else CallResult.ANSWERED
    return None


def _message_outcome(call: Any) -> CallResult | None:
    """A message call: delivered once it completed (the message was played)."""
    if call.status in UNANSWERED_STATUSES:
        return CallResult.NO_ANSWER
    if call.status == "completed":
        return CallResult.NO_ANSWER if call.answered_by == "fax" else CallResult.ANSWERED
    return None


def _translate(error: TwilioRestException) -> Exception:
    if error.status >= 500 or error.status == 429:
        return ChannelUnavailableError(f"Twilio answered HTTP {error.status}")
    if error.code in INVALID_CONTACT_CODES:
        return InvalidContactError(f"Twilio error {error.code}: the number reaches nobody")
    if error.code == OPTED_OUT_CODE:
        return ChannelRejectedError("Twilio error 21610: the recipient opted out of texts")
    return ChannelRejectedError(f"Twilio refused the request (HTTP {error.status}, "
                                f"error {error.code})")
