"""A signed webhook to the practice's own phone system or CRM.

Every step is one JSON POST to the practice's endpoint, signed so the receiver can tell it
came from this service and was not replayed: `X-MSR-Signature: v1=<hex>` is HMAC-SHA256,
keyed with the shared secret, over `<timestamp>.<body>`, and `X-MSR-Timestamp` carries the
timestamp (Unix seconds). `Idempotency-Key` carries the step's key: the receiver must
return its first answer for a key it has seen, and never reach the person twice.

One POST per try; the outreach activity retries and counts the provider's failures. What
the answer means:

- 2xx: delivered; a call's (and a voicemail's or message's) body says its outcome,
  `{"result": "answered"|"no_answer"}`;
- 4xx: refused, never retried; a 404, 410 or 422 whose JSON says
  `"error": "invalid_contact"` means the number or address reaches nobody;
- 500, 502, 503 (or no connection at all: refused, or not connected in time): the
  system failed before accepting the step; a retry may send it;
- a timeout or a dropped connection after the request was sent, a 504 (a gateway gave up
  waiting on a system that may have acted), or a 2xx without a valid result: the step may
  have been carried out, so it is never re-sent here (delivery uncertain).

Each request uses a fresh connection: a kept-alive one the receiver closed would fail
after sending and read as uncertain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
)
from missed_session.domain.models import CallResult

SIGNATURE_HEADER = "X-MSR-Signature"
TIMESTAMP_HEADER = "X-MSR-Timestamp"
SIGNATURE_VERSION = "v1"
REPLAY_TOLERANCE_SECONDS = 300
"""How old a signed request a receiver should still accept."""
UNCERTAIN_GATEWAY_STATUS = 504
"""Gateway Timeout: the system behind the gateway may have acted on the step."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float,
           tolerance: float = REPLAY_TOLERANCE_SECONDS) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookProvider:
    """Calls, voicemail, texts, email and the escalation call, through a signed webhook."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_seconds: float = 10.0,
        connect_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            msg = "the webhook secret must not be empty"
            raise ValueError(msg)
        self._url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout_seconds, sock_read=timeout_seconds
        )
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Release the HTTP connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ask the phone system to ring `to`; it answers `{"result": "answered"|"no_answer"}`."""
        return _call_result(
            await self._post(key, {"session_id": session_id, "kind": "call", "to": to})
        )

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Ask the phone system to leave `text`; it answers with the call's outcome.

        `{"result": "answered"}` means the message was played to a person or recorded on
        the voicemail; `"no_answer"` means it was not (busy, unanswered, no voicemail box).
        """
        return _call_result(await self._post(
            key, {"session_id": session_id, "kind": "voicemail", "to": to, "text": text}
        ))

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Ask the phone system to call `to` and deliver `text` (the emergency contact).

        Answered like a voicemail: the outcome of the call, once it is over.
        """
        return _call_result(await self._post(
            key, {"session_id": session_id, "kind": "message", "to": to, "text": text}
        ))

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Ask the system to send `text` as an SMS."""
        await self._post(key, {"session_id": session_id, "kind": "text", "to": to,
                               "text": text})

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Ask the system to send an email."""
        await self._post(key, {"session_id": session_id, "kind": "email", "to": to,
                               "subject": subject, "text": body})

    async def _post(self, key: str, payload: dict[str, str]) -> dict[str, Any]:
        body = json.dumps({"idempotency_key": key, **payload}, separators=(",", ":")).encode()
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            async with self._client().post(self._url, data=body, headers=headers) as response:
                if response.status == UNCERTAIN_GATEWAY_STATUS:
                    msg = "a gateway gave up waiting on the practice's system (HTTP 504)"
                    raise DeliveryUncertainError(msg)
                if response.status >= 500:
                    msg = f"the practice's system failed (HTTP {response.status})"
                    raise ChannelUnavailableError(msg)
                answer = await _json(response)
                if response.status >= 400:
                    raise _refusal(response.status, answer)
                return answer
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            msg = f"the practice's system could not be reached ({type(error).__name__})"
            raise ChannelUnavailableError(msg) from None
        except (TimeoutError, aiohttp.ClientError) as error:
            msg = ("no answer from the practice's system after sending the step "
                   f"({type(error).__name__})")
            raise DeliveryUncertainError(msg) from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(force_close=True)
            )
        return self._session


def _call_result(answer: dict[str, Any]) -> CallResult:
    """A delivered step's outcome; an accepted request without one is uncertain."""
    try:
        return CallResult(str(answer.get("result")))
    except ValueError:
        msg = "the practice's system accepted the step without a valid result"
        raise DeliveryUncertainError(msg) from None


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        answer = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return {}
    return answer if isinstance(answer, dict) else {}


def _refusal(status: int, answer: dict[str, Any]) -> Exception:
    if status in {404, 410, 422} and answer.get("error") == "invalid_contact":
        return InvalidContactError("the practice's system says the contact reaches nobody")
    return ChannelRejectedError(f"the practice's system refused the request (HTTP {status})")
