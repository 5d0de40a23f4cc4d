"""Activities that reach out to the client and the emergency contact.

Each takes an idempotency key built from the workflow id and the attempt, and the channel
honours it: a retry after a crash between "call placed" and "result reported" returns the
first call's result instead of ringing the client again.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

from missed_session.channels.base import InvalidContactError, PhoneChannel
from missed_session.domain import messages
from missed_session.domain.models import CallResult, EscalationRequest, OutreachRequest

INVALID_CONTACT = "InvalidContact"
"""Error type the workflow treats as "this number reaches nobody": never retried."""


@dataclass(frozen=True)
class Sender:
    """How outreach introduces itself: a neutral name and a call-back number."""

    name: str
    callback_number: str


class OutreachActivities:
    """Calls, voicemails and the escalation call, through one phone channel."""

    def __init__(self, phone: PhoneChannel, sender: Sender) -> None:
        self._phone = phone
        self._sender = sender

    @activity.defn
    async def call_client(self, request: OutreachRequest) -> CallResult:
        """Ring the client once."""
        try:
            return await self._phone.call(
                request.idempotency_key, request.session_id, request.client.phone
            )
        except InvalidContactError as error:
            raise _invalid(error) from None

    @activity.defn
    async def leave_voicemail(self, request: OutreachRequest) -> None:
        """Leave the concerned, non-identifying voicemail."""
        text = messages.voicemail(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        try:
            await self._phone.leave_voicemail(
                request.idempotency_key, request.session_id, request.client.phone, text
            )
        except InvalidContactError as error:
            raise _invalid(error) from None

    @activity.defn
    async def call_emergency_contact(self, request: EscalationRequest) -> None:
        """Tell the emergency contact the minimum necessary."""
        text = messages.emergency_contact_call(
            request.contact.name,
            request.client_first_name,
            self._sender.name,
            self._sender.callback_number,
        )
        try:
            await self._phone.deliver_message(
                request.idempotency_key, request.session_id, request.contact.phone, text
            )
        except InvalidContactError as error:
            raise _invalid(error) from None


def _invalid(error: InvalidContactError) -> ApplicationError:
    return ApplicationError(str(error), type=INVALID_CONTACT, non_retryable=True)
