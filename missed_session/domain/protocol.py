"""What the protocol does next, decided from the booking alone.

Pure functions so the workflow stays a readable sequence of steps and the clinical rules
are unit-tested without a server.
"""

from __future__ import annotations

from datetime import timedelta

from missed_session.domain.models import Outcome, RiskTier, SessionBooking


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

    For high risk it is the first: a careful therapist does not wait out the whole ladder.
    """
    if booking.risk_tier is RiskTier.HIGH:
        return 1
    return booking.protocol.max_attempts


def may_escalate(booking: SessionBooking) -> bool:
    """Escalation needs an emergency contact on file and the client's consent to use it."""
    contact = booking.client.emergency_contact
    return contact is not None and contact.consent


def unreachable_outcome(*, escalated: bool) -> Outcome:
    """The outcome when every attempt failed."""
    if escalated:
        return Outcome.UNREACHABLE_ESCALATED
    return Outcome.UNREACHABLE_ESCALATION_BLOCKED
