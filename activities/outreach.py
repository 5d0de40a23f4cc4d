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

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    MessageProvider,
    PhoneProvider,
)
from missed_session.channels.ledger import STORE_UNREACHABLE
from missed_session.domain import messages
from missed_session.domain.clients import (
    ConsentDecision,
    ConsentDefaults,
    StepOutcome,
    reach,
)
from missed_session.domain.escalation import contact_to_call
from missed_session.domain.models import (
    CallResult,
    Channel,
    EmergencyContact,
    EscalationRequest,
    OutreachRequest,
    TextCheck,
)
from missed_session.domain.person import LadderLookup, RunningLadder
from missed_session.store.clients import ClientDirectory
from missed_session.store.ladders import running_ladder
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
NO_CONSENT = "NoConsent"
"""Error type for a step the client's consent history does not allow as of the moment of
the step (read immediately before the provider call): never retried, nothing was sent; the
error's first detail is the consent record relied on (None: the practice's default)."""
LADDER_RUNNING = "LadderRunning"
"""Error type for a session's first step not taken because a session of the same person is
already in outreach (`OutreachRequest.ladder_since`): nothing was sent, never retried; the
error's first detail is the leader (`RunningLadder`, as JSON)."""
UNCERTAIN_REASON = "delivery uncertain"
"""The audit reason for a DeliveryUncertain step; the one-text-a-day rule counts a text
audited with it as sent (it may have been)."""

VOICEMAIL_UNCLEAR = ("the voicemail was played, but the provider could not tell whether a "
                     "person or a machine's recording heard it")
"""Why a voicemail answered by an unknown party is DeliveryUncertain."""

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

    def __init__(self, phone: PhoneProvider, sender: Sender,
                 messages: MessageProvider | None = None, *,
                 directory: ClientDirectory | None = None,
                 consent_defaults: ConsentDefaults | None = None,
                 provider_tries: int = PROVIDER_TRIES,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 ladders: LadderActivities | None = None) -> None:
        if provider_tries < 1:
            msg = f"provider_tries must be at least 1, not {provider_tries}"
            raise ValueError(msg)
        self._phone = phone
        self._sender = sender
        self._messages = messages
        self._provider_tries = provider_tries
        self._heartbeat_seconds = heartbeat_seconds
        self._directory = directory
        self._defaults = consent_defaults or ConsentDefaults()
        self._ladders = ladders

    @activity.defn
    async def call_client(self, request: OutreachRequest) -> StepOutcome:
        """Ring the client once, on the number the directory says now."""
        await self._ask_ladder(request)
        began = time.monotonic()
        to, record = await self._reach(request, Channel.CALL)
        at = _went_out(began)
        result = await self._deliver(lambda: self._phone.call(
            request.idempotency_key, request.session_id, to
        ))
        return StepOutcome(result=result, consent_record=record, at=at)

    @activity.defn
    async def leave_voicemail(self, request: OutreachRequest) -> StepOutcome:
        """Leave the concerned, non-identifying voicemail.

        ANSWERED once the provider confirms the message was played or recorded; NO_ANSWER
        when the call ended without that (busy, unanswered): not delivered. A message
        played to something the provider could not tell (ANSWERED_UNKNOWN) is
        :data:`DELIVERY_UNCERTAIN`: it may or may not have been recorded.
        """
        await self._ask_ladder(request)
        began = time.monotonic()
        to, record = await self._reach(request, Channel.VOICEMAIL)
        text = messages.voicemail(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        at = _went_out(began)
        result = await self._deliver(lambda: self._phone.leave_voicemail(
            request.idempotency_key, request.session_id, to, text
        ))
        if result is CallResult.ANSWERED_UNKNOWN:
            # Played, but the provider cannot say to whom or whether after the greeting:
            # neither left nor "not delivered".
            raise ApplicationError(VOICEMAIL_UNCLEAR, type=DELIVERY_UNCERTAIN,
                                   non_retryable=True)
        return StepOutcome(result=result, consent_record=record, at=at)

    @activity.defn
    async def send_text(self, request: OutreachRequest) -> StepOutcome:
        """Send the one-segment, neutral text (consent as of now; the workflow, limits)."""
        await self._ask_ladder(request)
        began = time.monotonic()
        to, record = await self._reach(request, Channel.TEXT)
        body = messages.text(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        channel = self._message_channel()
        at = _went_out(began)
        await self._deliver(lambda: channel.send_text(
            request.idempotency_key, request.session_id, to, body
        ))
        return StepOutcome(consent_record=record, at=at)

    @activity.defn
    async def send_email(self, request: OutreachRequest) -> StepOutcome:
        """Send the discreet email; a bounced address is an invalid contact."""
        await self._ask_ladder(request)
        began = time.monotonic()
        if request.client.email is None and self._directory is None:
            raise _translated(InvalidContactError("no email address on file"))
        email, record = await self._reach(request, Channel.EMAIL)
        subject, body = messages.email(
            request.client.first_name, self._sender.name, self._sender.callback_number
        )
        channel = self._message_channel()
        at = _went_out(began)
        await self._deliver(lambda: channel.send_email(
            request.idempotency_key, request.session_id, email, subject, body,
        ))
        return StepOutcome(consent_record=record, at=at)

    async def _ask_ladder(self, request: OutreachRequest) -> None:
        """A first step asks whether its person's ladder already runs; if so, it is not taken.

        Only on the step's first try: a retry's first try asked already (and may have sent).
        """
        since = request.ladder_since
        if since is None or activity.info().attempt > 1:
            return
        if self._ladders is None:
            raise ApplicationError("the step asks for a running ladder and this worker has "
                                   "no ladder lookup", non_retryable=True)
        leader = await self._ladders.find(LadderLookup(
            session_id=request.session_id, client_ref=request.client.ref,
            phone=request.client.phone, no_show_at=since))
        if leader is not None:
            raise ApplicationError(f"session {leader.session_id} of the same person is in "
                                   "outreach", leader.model_dump(mode="json"),
                                   type=LADDER_RUNNING, non_retryable=True)

    async def _reach(self, request: OutreachRequest, channel: Channel) -> tuple[str, str | None]:
        """Where this step goes and the consent record it rests on, read just now.

        A client the directory does not know keeps the booking's snapshot (the workflow
        checked its consents); a known client's current details and consent history
        decide, so a withdrawal recorded while the step was prepared wins.
        """
        client = request.client
        snapshot = client.email if channel is Channel.EMAIL else client.phone
        missing = "no email address on file" if channel is Channel.EMAIL else (
            "no phone number on file")
        if self._directory is None:
            if snapshot is None:
                raise _translated(InvalidContactError(missing))
            return snapshot, None
        known = await self._directory.get_with_history(client.ref)  # one statement
        if known is None:
            if snapshot is None:
                raise _translated(InvalidContactError(missing))
            return snapshot, None
        record, history = known
        found = reach(record, history, channel, at=datetime.now(UTC), defaults=self._defaults)
        if isinstance(found, ConsentDecision):
            raise _no_consent(found)
        return found.address, found.decision.record_id

    def _message_channel(self) -> MessageProvider:
        if self._messages is None:
            raise ApplicationError(
                "no text or email channel is configured", type=INVALID_CONTACT,
                non_retryable=True,
            )
        return self._messages

    @activity.defn
    async def call_emergency_contact(self, request: EscalationRequest) -> StepOutcome:
        """Tell the emergency contact the minimum necessary.

        ANSWERED once the provider confirms the message reached them (by voice or on their
        voicemail); NO_ANSWER when the call ended without that: not delivered. For a client
        in the directory, the consent history as of now decides who may be called (a
        withdrawal since booking is :data:`NO_CONSENT`); otherwise the booking's contact.
        """
        began = time.monotonic()
        contact, record = await self._emergency_contact(request)
        text = messages.emergency_contact_call(
            contact.name,
            request.client_first_name,
            self._sender.name,
            self._sender.callback_number,
        )
        at = _went_out(began)
        result = await self._deliver(lambda: self._phone.deliver_message(
            request.idempotency_key, request.session_id, contact.phone, text
        ))
        return StepOutcome(result=result, consent_record=record, at=at)

    async def _emergency_contact(
        self, request: EscalationRequest,
    ) -> tuple[EmergencyContact, str | None]:
        if self._directory is None:
            return request.contact, None
        known = await self._directory.get_with_history(request.client_ref)  # one statement
        if known is None:
            return request.contact, None
        record, history = known
        found = contact_to_call(record, history, at=datetime.now(UTC),
                                risk_tier=request.risk_tier, defaults=self._defaults,
                                override=request.clinician_override)
        if isinstance(found, ConsentDecision):
            raise _no_consent(found)
        return found

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


def _went_out(began: float) -> datetime:
    """When this try of the step goes out to the provider, for its trail event.

    The worker's clock now, as the provider will record the step; but never before the
    try's start on the server's clock plus the time the activity has run since `began`
    (`time.monotonic()` at its entry): a step cannot go out before its try started, and
    that bound is what holds when the worker's clock lags the server's, or under a
    time-skipping test server, whose clock runs ahead of the wall clock (and does not skip
    while an activity runs). Not the time the workflow next runs: under load that is
    seconds later. `python -m bench` sets the result beside the phone's own record.
    """
    started = activity.info().started_time + timedelta(seconds=time.monotonic() - began)
    return max(datetime.now(UTC), started)


def provider_failures_so_far() -> int:
    """The provider failures earlier tries of this step counted (their last heartbeat)."""
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], int) and not isinstance(details[0], bool):
        return details[0]
    return 0


class TextPolicyActivities:
    """The client-wide text rules: an opt-out holds in every session; one text a day."""

    def __init__(self, pool: asyncpg.Pool, directory: ClientDirectory | None = None) -> None:
        self._pool = pool
        self._directory = directory

    @activity.defn
    async def text_refusal(self, check: TextCheck) -> str | None:
        """Why no text may go to the client today (any session), or None if one may.

        An opt-out in a session trail holds unless the client directory records texts
        consented again after it (a START); the directory's own STOP/START records are
        judged by the text step itself, just before it sends.
        """
        opted_out, texted = await text_history(
            self._pool, check.client_ref, check.day_start, check.day_end, UNCERTAIN_REASON
        )
        if opted_out and self._directory is not None:
            opted_out = not await self._directory.restored_after_trail_opt_out(
                check.client_ref)
        if opted_out:
            return "the client opted out of texts"
        if texted:
            return "a text was already sent today"
        return None


class LadderActivities:
    """One person, one ladder: finds whether the same person is already in outreach."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def running_ladder(self, lookup: LadderLookup) -> RunningLadder | None:
        """The session of the same person (client ref or phone) in outreach now, if any."""
        return await self.find(lookup)

    async def find(self, lookup: LadderLookup) -> RunningLadder | None:
        """The same as `running_ladder`, for the activities that ask it on their way."""
        found = await running_ladder(self._pool, session_id=lookup.session_id,
                                     client_ref=lookup.client_ref, phone=lookup.phone,
                                     no_show_at=lookup.no_show_at)
        if found is None:
            return None
        leader, last_event_at = found
        return RunningLadder(session_id=leader, last_event_at=last_event_at)


def _no_consent(decision: ConsentDecision) -> ApplicationError:
    """The refusal the workflow audits as a skipped step (or a blocked escalation)."""
    return ApplicationError(f"no consent as of the step: {decision.reason}",
                            decision.record_id, type=NO_CONSENT, non_retryable=True)


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
