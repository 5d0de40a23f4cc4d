"""Activities that reach out to the client and the emergency contact.

Each takes an idempotency key built from the workflow id and the attempt, and the channel
honours it: a retry after a crash between "call placed" and "result reported" returns the
first call's result instead of ringing the client again.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from missed_session.channels.base import (
    ChannelRejectedError,
    InvalidContactError,
    MessageChannel,
    PhoneChannel,
)
from missed_session.domain import messages
from missed_session.domain.models import (
    CallResult,
    EscalationRequest,
    OutreachRequest,
    TextCheck,
)
from missed_session.store.text_history import text_history

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
                 messages: MessageChannel | None = None) -> None:
        self._phone = phone
        self._sender = sender
        self._messages = messages

    @activity.defn
    async def call_client(self, request: OutreachRequest) -> CallResult:
        """Ring the client once."""
        try:
            return await self._phone.call(
                request.idempotency_key, request.session_id, request.client.phone
            )
        except (InvalidContactError, ChannelRejectedError) as error:
            raise _invalid(error) from None

    @activity.defn
    async def leave_voicemail(self, request: OutreachRequest) -> CallResult:
        """Leave the concerned, non-identifying voicemail.

        ANSWERED once the provider confirms the message was played or recorded; NO_ANSWER
        when the call ended without that (busy, unanswered): not delivered.
        """
        text = messages.voicemail(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        try:
            return await self._phone.leave_voicemail(
                request.idempotency_key, request.session_id, request.client.phone, text
            )
        except (InvalidContactError, ChannelRejectedError) as error:
            raise _invalid(error) from None

    @activity.defn
    async def send_text(self, request: OutreachRequest) -> None:
        """Send the one-segment, neutral text (the workflow enforces consent and limits)."""
        body = messages.text(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        try:
            await self._message_channel().send_text(
                request.idempotency_key, request.session_id, request.client.phone, body
            )
        except (InvalidContactError, ChannelRejectedError) as error:
            raise _invalid(error) from None

    @activity.defn
    async def send_email(self, request: OutreachRequest) -> None:
        """Send the discreet email; a bounced address is an invalid contact."""
        if request.client.email is None:
            raise _invalid(InvalidContactError("no email address on file"))
        subject, body = messages.email(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        try:
            await self._message_channel().send_email(
                request.idempotency_key, request.session_id, request.client.email, subject,
                body,
            )
        except (InvalidContactError, ChannelRejectedError) as error:
            raise _invalid(error) from None

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
        try:
            return await self._phone.deliver_message(
                request.idempotency_key, request.session_id, request.contact.phone, text
            )
        except (InvalidContactError, ChannelRejectedError) as error:
            raise _invalid(error) from None


class TextPolicyActivities:
    """The client-wide text rules: an opt-out holds in every session; one text a day."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def text_refusal(self, check: TextCheck) -> str | None:
        """Why no text may go to the client today (any session), or None if one may."""
        opted_out, texted = await text_history(
            self._pool, check.client_ref, check.day_start, check.day_end
        )
        if opted_out:
            return "the client opted out of texts"
        if texted:
            return "a text was already sent today"
        return None


def _invalid(error: InvalidContactError | ChannelRejectedError) -> ApplicationError:
    kind = CHANNEL_REJECTED if isinstance(error, ChannelRejectedError) else INVALID_CONTACT
    return ApplicationError(str(error), type=kind, non_retryable=True)
