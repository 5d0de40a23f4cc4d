"""Calls, voicemail and texts through Twilio, with the official `twilio` SDK.

A call rings the client with answering-machine detection; when a person answers, the TwiML
connects them to the practice's call-back number, so the first voice they hear is the
practice's. The channel then polls the call until it is answered or over. A voicemail
(and the emergency contact's message) is a call whose TwiML says the text, played after
the beep when a machine answers. A text is one SMS. Email is not Twilio's: the worker
pairs this channel with SMTP for that.

Twilio has no idempotency keys: the worker wraps this channel in the delivery ledger
(`channels/ledger.py`), which delivers each step at most once, across restarts too. A call
also remembers its SID here, so that a retry after an outage while *polling* its outcome
(the ledger releases the step on any error) polls the same call instead of ringing again.

The SDK logs requests and responses (numbers included) at INFO: its loggers are capped at
WARNING here, because no phone number may reach the logs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient
from twilio.twiml.voice_response import VoiceResponse

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
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
    ) -> None:
        self._client = client
        self._from = from_number
        self._callback = callback_number
        self._ring_seconds = ring_seconds
        self._poll_seconds = poll_seconds
        self._max_polls = max_polls
        self._calls: dict[str, str] = {}
        """Idempotency key -> call SID placed for it (this process only)."""
        self._results: dict[str, CallResult] = {}

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring `to`; a person who answers is connected to the practice."""
        if key in self._results:
            return self._results[key]
        sid = self._calls.get(key)
        if sid is None:
            connect = VoiceResponse()
            connect.dial(self._callback)
            sid = (await self._twilio(self._client.calls.create_async(
                to=to, from_=self._from, twiml=str(connect), timeout=self._ring_seconds,
                machine_detection="Enable",
            ))).sid
            self._calls[key] = sid
        result = await self._outcome(sid)
        self._results[key] = result
        return result

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Call `to` and say `text` (after the beep, if a machine answers)."""
        return await self._say(key, to, text)

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Call `to` and deliver `text` by voice or voicemail (the emergency contact)."""
        return await self._say(key, to, text)

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Send one SMS."""
        await self._twilio(self._client.messages.create_async(
            to=to, from_=self._from, body=text,
        ))

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Twilio sends no email: pair this channel with SMTP."""
        msg = "the Twilio channel sends no email"
        raise ChannelRejectedError(msg)

    async def _say(self, key: str, to: str, text: str) -> CallResult:
        """Place the message call, then wait for Twilio to say how it ended.

        Queued is not delivered: only a call that completed played the message (to a
        person, or after the beep); busy, unanswered and cancelled calls did not.
        """
        if key in self._results:
            return self._results[key]
        sid = self._calls.get(key)
        if sid is None:
            message = VoiceResponse()
            message.say(text)
            sid = (await self._twilio(self._client.calls.create_async(
                to=to, from_=self._from, twiml=str(message), timeout=self._ring_seconds,
                machine_detection="DetectMessageEnd",
            ))).sid
            self._calls[key] = sid
        result = await self._message_outcome(sid)
        self._results[key] = result
        return result

    async def _message_outcome(self, sid: str) -> CallResult:
        """Poll a message call until it is over."""
        for _ in range(self._max_polls):
            call = await self._twilio(self._client.calls(sid).fetch_async())
            if call.status == "failed":
                msg = "the call failed: the number reaches nobody"
                raise InvalidContactError(msg)
            if call.status in UNANSWERED_STATUSES:
                return CallResult.NO_ANSWER
            if call.status == "completed":
                return CallResult.ANSWERED
            await asyncio.sleep(self._poll_seconds)
        msg = "the message call did not finish in time"
        raise ChannelUnavailableError(msg)

    async def _outcome(self, sid: str) -> CallResult:
        """Poll the call until a person answered, or it is over without one."""
        for _ in range(self._max_polls):
            call = await self._twilio(self._client.calls(sid).fetch_async())
            if call.status == "failed":
                msg = "the call failed: the number reaches nobody"
                raise InvalidContactError(msg)
            if call.status in UNANSWERED_STATUSES:
                return CallResult.NO_ANSWER
            if call.status in ANSWERED_STATUSES:
                if call.answered_by in MACHINE_ANSWERS:
                    return CallResult.NO_ANSWER
                return CallResult.ANSWERED
            await asyncio.sleep(self._poll_seconds)
        msg = "the call did not finish ringing in time"
        raise ChannelUnavailableError(msg)

    async def _twilio(self, request: Any) -> Any:
        """Await one SDK request, turning Twilio's errors into the channel's."""
        try:
            return await request
        except TwilioRestException as error:
            raise _translate(error) from None
        except (TimeoutError, aiohttp.ClientError) as error:
            msg = f"Twilio could not be reached ({type(error).__name__})"
            raise ChannelUnavailableError(msg) from None


def _translate(error: TwilioRestException) -> Exception:
    if error.status >= 500 or error.status == 429:
        return ChannelUnavailableError(f"Twilio answered HTTP {error.status}")
    if error.code in INVALID_CONTACT_CODES:
        return InvalidContactError(f"Twilio error {error.code}: the number reaches nobody")
    if error.code == OPTED_OUT_CODE:
        return ChannelRejectedError("Twilio error 21610: the recipient opted out of texts")
    return ChannelRejectedError(f"Twilio refused the request (HTTP {error.status}, "
                                f"error {error.code})")
