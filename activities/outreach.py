"""Activities that reach out to the client and the emergency contact.

Each takes an idempotency key built from the workflow id and the attempt, and the channel
honours it: a retry after a crash between "call placed" and "result reported" returns the
first call's result instead of ringing the client again.

What the provider answered decides what the workflow sees (contract A, with the session
workflow's retry policy):

- the provider failed before accepting (5xx, refused): retried, and counted; the count
  travels to the next try in the heartbeat details, and after `provider_tries` of them
  the step fails for good with :data:`CHANNEL_FAILED`;
- the provider may have accepted: :data:`DELIVERY_UNCERTAIN` at once, never re-sent;
- a refusal or an invalid contact: :data:`CHANNEL_REJECTED` / :data:`INVALID_CONTACT`;
- our own infrastructure failing (PostgreSQL or the delivery ledger unreachable, the
  worker dying): a plain retryable error, not counted, retried for as long as it lasts.

Every step heartbeats while it waits on the provider, so a dead worker's step is retried
within seconds once the workflow sets a heartbeat timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import HEARTBEAT_SECONDS, heartbeating
from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
    MessageChannel,
    PhoneChannel,
)
from missed_session.channels.ledger import STORE_UNREACHABLE
from missed_session.domain import messages
from missed_session.domain.models import (
    CallResult,
    EscalationRequest,
    OutreachRequest,
    TextCheck,
)
from missed_session.store.text_history import text_history

log = structlog.get_logger(__name__)
T = TypeVar("T")

INVALID_CONTACT = "InvalidContact"
"""Error type the workflow treats as "this number reaches nobody": never retried."""
CHANNEL_REJECTED = "ChannelRejected"
"""Error type for a request the provider refused (4xx): never retried, the step failed."""
CHANNEL_FAILED = "ChannelFailed"
"""Error type for a provider that failed (5xx, refused connection, ...) on every one of the
step's tries (counted by the activity itself across retries): never retried, the step
failed, and the attempt counts against the client."""
DELIVERY_UNCERTAIN = "DeliveryUncertain"
"""Error type for a step the provider may have accepted (a timeout or lost connection after
the request was sent; a dead worker's step found pending): never re-sent, audited as
"delivery uncertain"."""
CHANNEL_UNAVAILABLE = "ChannelUnavailable"
"""Error type of one provider failure short of `provider_tries`: retryable (the workflow's
policy backs off and tries again)."""
UNCERTAIN_REASON = "delivery uncertain"
"""The audit reason for a DeliveryUncertain step; the one-text-a-day rule counts a text
audited with it as sent (it may have been)."""

PROVIDER_TRIES = 5
"""How many provider failures end a step (K): the provider is down, not the client."""


@dataclass(frozen=True)
class Sender:
    """How outreach introduces itself: a neutral name and a call-back number."""

    name: str
    callback_number: str


class OutreachActivities:
    """Calls, voicemails, texts, email and the escalation call.

    Calls and voicemail go through the phone channel; texts and email through the message
    channel (the same object when one provider offers both).
    """

    def __init__(self, phone: PhoneChannel, sender: Sender,
                 messages: MessageChannel | None = None, *,
                 provider_tries: int = PROVIDER_TRIES,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        if provider_tries < 1:
            msg = f"provider_tries must be at least 1, not {provider_tries}"
            raise ValueError(msg)
        self._phone = phone
        self._sender = sender
        self._messages = messages
        self._provider_tries = provider_tries
        self._heartbeat_seconds = heartbeat_seconds

    @activity.defn
    async def call_client(self, request: OutreachRequest) -> CallResult:
        """Ring the client once."""
        return await self._deliver(lambda: self._phone.call(
            request.idempotency_key, request.session_id, request.client.phone
        ))

    @activity.defn
    async def leave_voicemail(self, request: OutreachRequest) -> CallResult:
        """Leave the concerned, non-identifying voicemail.

        ANSWERED once the provider confirms the message was played or recorded; NO_ANSWER
        when the call ended without that (busy, unanswered): not delivered.
        """
        text = messages.voicemail(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        return await self._deliver(lambda: self._phone.leave_voicemail(
            request.idempotency_key, request.session_id, request.client.phone, text
        ))

    @activity.defn
    async def send_text(self, request: OutreachRequest) -> None:
        """Send the one-segment, neutral text (the workflow enforces consent and limits)."""
        body = messages.text(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        channel = self._message_channel()
        await self._deliver(lambda: channel.send_text(
            request.idempotency_key, request.session_id, request.client.phone, body
        ))

    @activity.defn
    async def send_email(self, request: OutreachRequest) -> None:
        """Send the discreet email; a bounced address is an invalid contact."""
        email = request.client.email
        if email is None:
            raise _translated(InvalidContactError("no email address on file"))
        subject, body = messages.email(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        channel = self._message_channel()
        await self._deliver(lambda: channel.send_email(
            request.idempotency_key, request.session_id, email, subject, body,
        ))

    def _message_channel(self) -> MessageChannel:
        if self._messages is None:
            raise ApplicationError(
                "no text or email channel is configured", type=INVALID_CONTACT,
                non_retryable=True,
            )
        return self._messages

    @activity.defn
    async def call_emergency_contact(self, request: EscalationRequest) -> CallResult:
        """Tell the emergency contact the minimum necessary.

        ANSWERED once the provider confirms the message reached them (by voice or on their
        voicemail); NO_ANSWER when the call ended without that: not delivered.
        """
        text = messages.emergency_contact_call(
            request.contact.name,
            request.client_first_name,
            self._sender.name,
            self._sender.callback_number,
        )
        return await self._deliver(lambda: self._phone.deliver_message(
            request.idempotency_key, request.session_id, request.contact.phone, text
        ))

    async def _deliver(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run one channel step, heartbeating, and translate its outcome for the workflow."""
        failures = provider_failures_so_far()
        try:
            return await heartbeating(step(), failures, every=self._heartbeat_seconds)
        except ChannelUnavailableError as error:
            failures += 1
            activity.heartbeat(failures)  # the next try starts from this count
            if failures >= self._provider_tries:
                msg = f"the provider failed {failures} times (last: {error})"
                raise ApplicationError(msg, type=CHANNEL_FAILED, non_retryable=True) from None
            msg = f"the provider failed ({error}); try {failures} of {self._provider_tries}"
            raise ApplicationError(msg, type=CHANNEL_UNAVAILABLE) from None
        except (InvalidContactError, ChannelRejectedError, DeliveryUncertainError) as error:
            raise _translated(error) from None
        except STORE_UNREACHABLE as error:
            # Our outage, not the provider's: retried by the policy for as long as it
            # lasts, and not counted against the step.
            log.warning("outreach_store_unreachable", error_type=type(error).__name__,
                        attempt=activity.info().attempt)
            raise


def provider_failures_so_far() -> int:
    """The provider failures earlier tries of this step counted (their last heartbeat)."""
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], int) and not isinstance(details[0], bool):
        return details[0]
    return 0


class TextPolicyActivities:
    """The client-wide text rules: an opt-out holds in every session; one text a day."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def text_refusal(self, check: TextCheck) -> str | None:
        """Why no text may go to the client today (any session), or None if one may."""
        opted_out, texted = await text_history(
            self._pool, check.client_ref, check.day_start, check.day_end, UNCERTAIN_REASON
        )
        if opted_out:
            return "the client opted out of texts"
        if texted:
            return "a text was already sent today"
        return None


def _translated(
    error: InvalidContactError | ChannelRejectedError | DeliveryUncertainError,
) -> ApplicationError:
    if isinstance(error, DeliveryUncertainError):
        kind = DELIVERY_UNCERTAIN
    elif isinstance(error, ChannelRejectedError):
        kind = CHANNEL_REJECTED
    else:
        kind = INVALID_CONTACT
    return ApplicationError(str(error), type=kind, non_retryable=True)
