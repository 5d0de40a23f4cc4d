"""What the protocol does next, decided from the booking alone.

Pure functions so the workflow stays a readable sequence of steps and the clinical rules
are unit-tested without a server.
"""

from __future__ import annotations

from datetime import timedelta

from missed_session.domain import messages
from missed_session.domain.models import (
    CallResult,
    Channel,
    ConsentScope,
    Outcome,
    RiskTier,
    SessionBooking,
)


def grace_period_minutes(booking: SessionBooking) -> int:
    """High-risk clients get the shorter grace period: waiting longer costs more."""
    protocol = booking.protocol
    if booking.risk_tier is RiskTier.HIGH:
        return protocol.high_risk_grace_period_minutes
    return protocol.grace_period_minutes


def grace_period(booking: SessionBooking) -> timedelta:
    """The grace period the workflow really waits (time scale applied)."""
    return booking.protocol.scaled(grace_period_minutes(booking))


def attempt_spacing(booking: SessionBooking) -> timedelta:
    """The wait between outreach attempts the workflow really observes."""
    return booking.protocol.scaled(booking.protocol.attempt_spacing_minutes)


def escalation_after_attempt(booking: SessionBooking) -> int:
    """After which failed attempt the emergency contact is considered.

    The protocol says so per risk tier (by default: the first for high risk, since a
    careful therapist does not wait out the whole ladder; the last otherwise).
    """
    after: int | None = getattr(booking.protocol.escalate_after, booking.risk_tier.value)
    max_attempts = booking.protocol.max_attempts
    return max_attempts if after is None else min(after, max_attempts)


def unreachable_outcome(*, escalated: bool) -> Outcome:
    """The outcome when every attempt failed."""
    if escalated:
        return Outcome.UNREACHABLE_ESCALATED
    return Outcome.UNREACHABLE_ESCALATION_BLOCKED


def clinician_wait(booking: SessionBooking) -> timedelta:
    """How long a session awaiting a clinician's decision waits before closing without one."""
    return booking.protocol.scaled(booking.protocol.clinician_wait_hours * 60)


def escalation_blocker(booking: SessionBooking) -> str | None:
    """Why the emergency contact may not be reached on consent alone, or None if it may."""
    contact = booking.client.emergency_contact
    if contact is None:
        return "no emergency contact on file"
    if not contact.consent:
        return "no consent on file"
    if contact.consent_scope is ConsentScope.SAFETY_CONCERN and booking.risk_tier not in {
        RiskTier.ELEVATED, RiskTier.HIGH,
    }:
        return "consent covers safety concerns only"
    return None


def outreach_channels(booking: SessionBooking) -> tuple[Channel, ...]:
    """The steps of one outreach attempt: the protocol's order, the client's preference first.

    Consent is not applied here: a step without consent is still listed, so the workflow
    can record that it was skipped and why.
    """
    order = booking.protocol.channels
    if booking.client.phone is None and Channel.EMAIL not in order:
        # A client reached by email only: the one channel that exists for them joins the
        # ladder, rather than a ladder of skipped calls that ends without reaching out.
        order = (*order, Channel.EMAIL)
    preferred = booking.client.preferences.preferred
    if preferred is None or preferred not in order:
        return order
    return (preferred, *(channel for channel in order if channel is not preferred))


NO_PHONE = "no phone number on file"
"""Why a call, voicemail or text is skipped for a client reached by email only."""
NO_MOBILE = "no mobile number on file (the number on file is a landline)"
"""Why a text is skipped for a client whose only number is a landline."""


def skip_reason(booking: SessionBooking, channel: Channel) -> str | None:
    """Why `channel` may not be used for this client at all, or None if it may."""
    client = booking.client
    if channel is not Channel.EMAIL and channel not in client.phone_channels:
        # The address comes first: "no consent" for a number that does not exist would
        # send a reader looking for a consent record that could not have helped.
        return NO_PHONE if client.phone is None else NO_MOBILE
    if not client.preferences.allows(channel):
        return f"no consent for {channel.value}"
    if channel is Channel.EMAIL and client.email is None:
        return "no email address on file"
    return None


SAME_ADDRESS: dict[Channel, frozenset[Channel]] = {
    Channel.CALL: frozenset({Channel.CALL, Channel.VOICEMAIL, Channel.TEXT}),
    Channel.VOICEMAIL: frozenset({Channel.CALL, Channel.VOICEMAIL, Channel.TEXT}),
    Channel.TEXT: frozenset({Channel.CALL, Channel.VOICEMAIL, Channel.TEXT}),
    Channel.EMAIL: frozenset({Channel.EMAIL}),
}
"""Channels that share an address: an invalid phone number ends calls, voicemail and texts."""


def escalation_may_go_outside_window(booking: SessionBooking) -> bool:
    """High-risk escalation ignores the contact window only where the protocol says so."""
    return booking.risk_tier is RiskTier.HIGH and (
        booking.protocol.high_risk_escalation_outside_window
    )


# -- who answered --------------------------------------------------------------------------
#
# Reaching the client ends outreach, so for a high-risk client an answer that is not clearly
# theirs must not end it on its own: a roommate or a wrong number would close the session.
# Each function says why an answer does not count as reaching the client, or None if it does.


def call_not_the_client(booking: SessionBooking, result: CallResult) -> str | None:
    """Why an answered call does not count as reaching the client, or None if it does."""
    if result is CallResult.ANSWERED_UNKNOWN and booking.risk_tier is RiskTier.HIGH:
        return "the provider could not tell whether a person answered"
    return None


def response_not_the_client(booking: SessionBooking, responder: str) -> str | None:
    """Why a response staff recorded does not count as reaching the client, or None.

    For a high-risk client only the client themselves counts; otherwise someone speaking
    for them (a partner calling to say they are running late) does.
    """
    if booking.risk_tier is RiskTier.HIGH and responder.strip().lower() != "client":
        return "a high-risk client's response must come from the client"
    return None


def reply_not_the_client(booking: SessionBooking, body: str) -> str | None:
    """Why a text reply does not count as reaching the client, or None if it does.

    A reply that says it is not the client never counts. For a high-risk client no text
    counts on its own: a phone can be in anyone's hands, so a person confirms.
    """
    if messages.says_wrong_person(body):
        return "the reply says it is not from the client"
    if booking.risk_tier is RiskTier.HIGH:
        return "a text reply alone does not confirm a high-risk client is safe"
    return None
