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
- once a call or message exists, its SID is kept in the ledger at once (`receipts`): a
  worker that dies while the call rings leaves a claim its retry resumes (`resume_call`,
  `resume_message`: polling that call), so the call is never placed twice and its
  outcome still counts only once Twilio reports it;
- once a call exists, its outcome is polled (or read from the status callback Twilio
  posts to `status_callback_url`, which the API records in the ledger; polling stays the
  fallback); a poll that fails is tried again until the polling deadline, after which the
  step is uncertain: the call was placed, its outcome is unknown, and it is never placed
  again.

Who answered (answering-machine detection): only `human` is the client's answer; a machine
or fax is no answer; anything else (`unknown`, no verdict) is ANSWERED_UNKNOWN, which the
protocol treats as an answer not clearly the client's. For a message call, a human or the
end of a machine's greeting means the message was heard or recorded (ANSWERED); a fax is
not delivered; anything else is ANSWERED_UNKNOWN (played, but perhaps over a greeting).

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
from missed_session.channels.ledger import STORE_UNREACHABLE, ProviderReceipts, ProviderReport
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
FINAL_STATUSES = frozenset({"completed", "failed", *UNANSWERED_STATUSES})
"""A call in one of these is over: its status (and verdict) will not change."""
HUMAN = "human"
"""Twilio's verdict for a person answering: the only one that is clearly the client."""
MACHINE_GREETING_ENDED = frozenset({
    "machine", "machine_end_beep", "machine_end_silence", "machine_end_other",
})
"""A machine answered and (DetectMessageEnd) its greeting ended: what follows is recorded.
The Call resource reports `machine`; the AMD callback the finer values."""
MACHINE_ANSWERS = frozenset({"machine_start", "fax", *MACHINE_GREETING_ENDED})
"""A machine or fax answered a client's call: no answer."""


class TwilioProvider:
    """The phone and text channel through Twilio's REST API."""

    def __init__(
        self,
        client: TwilioClient,
        *,
        from_number: str,
        callback_number: str,
        receipts: ProviderReceipts | None = None,
        status_callback_url: str | None = None,
        ring_seconds: int = 30,
        poll_seconds: float = 2.0,
        max_polls: int = 90,
        fetch_every: int = 5,
        request_timeout_seconds: float = 20.0,
    ) -> None:
        """Set up the channel; `receipts` (the delivery ledger) keeps each SID.

        `status_callback_url` is the API's `/inbound/twilio/calls` route as Twilio reaches
        it: with it, the status callbacks' reports are read every poll and Twilio is asked
        only every `fetch_every` polls (the fallback for a callback that never comes).
        """
        if fetch_every < 1:
            msg = f"fetch_every must be at least 1, not {fetch_every}"
            raise ValueError(msg)
        self._client = client
        self._from = from_number
        self._callback = callback_number
        self._receipts = receipts
        self._status_callback = status_callback_url
        self._ring_seconds = ring_seconds
        self._poll_seconds = poll_seconds
        self._max_polls = max_polls
        self._fetch_every = fetch_every if status_callback_url is not None else 1
        self._request_timeout = request_timeout_seconds

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring `to`; a person who answers is connected to the practice."""
        connect = VoiceResponse()
        connect.dial(self._callback)
        sid = await self._create_call(key, to, str(connect), machine_detection="Enable")
        return await self.resume_call(sid)

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
        message = await self._create(self._client.messages.create_async(
            to=to, from_=self._from, body=text,
        ))
        await self._accepted(key, message.sid)

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Twilio sends no email: pair this channel with SMTP."""
        msg = "the Twilio channel sends no email"
        raise ChannelRejectedError(msg)

    async def resume_call(self, provider_ref: str) -> CallResult:
        """Wait for the outcome of the client's call `provider_ref`."""
        return await self._outcome(provider_ref, _call_outcome)

    async def resume_message(self, provider_ref: str) -> CallResult:
        """Wait for the outcome of the message call `provider_ref`."""
        return await self._outcome(provider_ref, _message_outcome)

    async def resume_text(self, provider_ref: str) -> None:
        """A text Twilio answered with a SID is sent: it accepted it.

        That is all a text's "sent" means here (the first try does not wait for the
        handset either), so there is nothing to ask Twilio again.
        """

    async def _say(self, key: str, to: str, text: str) -> CallResult:
        """Place the message call, then wait for Twilio to say how it ended."""
        message = VoiceResponse()
        message.say(text)
        sid = await self._create_call(key, to, str(message),
                                      machine_detection="DetectMessageEnd")
        return await self.resume_message(sid)

    async def _create_call(self, key: str, to: str, twiml: str, *,
                           machine_detection: str) -> str:
        callback: dict[str, Any] = {}
        if self._status_callback is not None:
            # Only the final status ("completed" covers busy, no-answer, ... too).
            callback = {"status_callback": self._status_callback,
                        "status_callback_method": "POST"}
        call = await self._create(self._client.calls.create_async(
            to=to, from_=self._from, twiml=twiml, timeout=self._ring_seconds,
            machine_detection=machine_detection, **callback,
        ))
        sid: str = call.sid
        await self._accepted(key, sid)
        return sid

    async def _accepted(self, key: str, sid: str) -> None:
        if self._receipts is not None:
            await self._receipts.accepted(key, sid)

    async def _outcome(self, sid: str, read: Callable[[Any], CallResult | None]) -> CallResult:
        """Wait until `read` finds the call over: from its status callback, else by polling.

        Failed polls are tried again until the deadline.
        """
        problem = "it was still in progress"
        for poll in range(self._max_polls):
            if poll:
                await asyncio.sleep(self._poll_seconds)
            call: Any = await self._report(sid)
            if call is None and poll % self._fetch_every == 0:
                try:
                    call = await self._request(self._client.calls(sid).fetch_async())
                except TwilioRestException as error:
                    problem = f"Twilio answered HTTP {error.status}"
                    continue
                except (TimeoutError, aiohttp.ClientError) as error:
                    problem = f"Twilio could not be reached ({type(error).__name__})"
                    continue
            if call is None:
                continue
            if call.status == "failed":
                msg = "the call failed: the number reaches nobody"
                raise InvalidContactError(msg)
            result = read(call)
            if result is not None:
                return result
        msg = f"the call was placed but its outcome is unknown (last poll: {problem})"
        raise DeliveryUncertainError(msg)

    async def _report(self, sid: str) -> ProviderReport | None:
        """The call's final status as its status callback reported it, if it did."""
        if self._receipts is None or self._status_callback is None:
            return None
        try:
            report = await self._receipts.reported(sid)
        except STORE_UNREACHABLE:
            return None  # our outage: ask Twilio instead
        if report is None or report.status not in FINAL_STATUSES:
            return None
        return report

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
    """A client's call: a person, no one, or not clearly the client (None: still going).

    A call in progress without a verdict is still being listened to by the detector.
    """
    if call.status in UNANSWERED_STATUSES:
        return CallResult.NO_ANSWER
    if call.status not in ANSWERED_STATUSES:
        return None
    if call.answered_by == HUMAN:
        return CallResult.ANSWERED
    if call.answered_by in MACHINE_ANSWERS:
        return CallResult.NO_ANSWER
    if not call.answered_by and call.status == "in-progress":
        return None
    return CallResult.ANSWERED_UNKNOWN


def _message_outcome(call: Any) -> CallResult | None:
    """A message call: delivered once it completed after a person or a machine's greeting."""
    if call.status in UNANSWERED_STATUSES:
        return CallResult.NO_ANSWER
    if call.status != "completed":
        return None
    if call.answered_by == HUMAN or call.answered_by in MACHINE_GREETING_ENDED:
        return CallResult.ANSWERED
    if call.answered_by == "fax":
        return CallResult.NO_ANSWER
    return CallResult.ANSWERED_UNKNOWN


def _translate(error: TwilioRestException) -> Exception:
    if error.status >= 500 or error.status == 429:
        return ChannelUnavailableError(f"Twilio answered HTTP {error.status}")
    if error.code in INVALID_CONTACT_CODES:
        return InvalidContactError(f"Twilio error {error.code}: the number reaches nobody")
    if error.code == OPTED_OUT_CODE:
        return ChannelRejectedError("Twilio error 21610: the recipient opted out of texts")
    return ChannelRejectedError(f"Twilio refused the request (HTTP {error.status}, "
                                f"error {error.code})")
