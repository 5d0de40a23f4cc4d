"""The notice workflow's input and id, and the payloads of its activities."""

from __future__ import annotations

from missed_session.domain.models import (
    AwareDatetime,
    Model,
    RiskTier,
    SessionBooking,
    TherapistNotice,
)
from missed_session.domain.notices import EndReason, Policy, Target
from missed_session.domain.roster import NoticeRoute, Role


def notice_workflow_id(notice_key: str) -> str:
    """The notice workflow's id: `notice-<session id>/<name>`."""
    return f"notice-{notice_key}"


class NoticePlanRequest(Model):
    """Ask for the policy a notice follows (and whether there is a roster to follow it)."""

    notice: TherapistNotice
    """The alert or task."""
    risk_tier: RiskTier
    """The session's risk tier."""


class NoticePlan(Model):
    """What the practice's rules say for one notice, fixed when it opens."""

    policy: Policy
    """The on-call ladder the notice climbs."""
    include_first_name: bool
    """Whether messages may carry the client's first name."""
    ack_code_hours: int
    """How long a code stays valid."""
    roster_version: int
    """The roster in force when the notice opened."""


class NoticeRequest(Model):
    """The notice workflow's input."""

    notice: TherapistNotice
    """The alert or task (its key is the notice's audit stream)."""
    risk_tier: RiskTier
    """The session's risk tier."""
    client_ref: str
    """Pseudonymous client id (in every message)."""
    client_first_name: str
    """Only in messages when `plan.include_first_name`."""
    plan: NoticePlan
    """The policy and rules, as they were when the notice opened."""
    time_scale: float = 1.0
    """Divides every wait (demos and end-to-end tests only)."""

    @classmethod
    def about(cls, booking: SessionBooking, notice: TherapistNotice,
              plan: NoticePlan) -> NoticeRequest:
        """The request for a notice about `booking`'s session (its client, risk and scale)."""
        return cls(notice=notice, risk_tier=booking.risk_tier, client_ref=booking.client.ref,
                   client_first_name=booking.client.first_name, plan=plan,
                   time_scale=booking.protocol.time_scale)


class Recipient(Model):
    """One clinician a rung notifies, with the addresses to use, in order."""

    clinician_id: str
    """Staff id."""
    role: Role
    """Their role on the roster."""
    channels: tuple[tuple[NoticeRoute, str], ...]
    """(channel, address) in the clinician's order."""
    sms: str | None
    """Their SMS number: an SMS acknowledgment must come from it."""


class RecipientQuery(Model):
    """Ask who rung `target` notifies at `at`."""

    target: Target
    """therapist, on_call or supervisor."""
    therapist_id: str
    """The session's therapist."""
    at: AwareDatetime
    """The instant (the workflow's clock)."""


class Recipients(Model):
    """The answer: clinicians, or why there are none."""

    recipients: tuple[Recipient, ...]
    """Who to notify."""
    reason: str | None = None
    """Why nobody, when empty."""


class NoticeDelivery(Model):
    """One message to one clinician on one channel."""

    idempotency_key: str
    """`notice-<key>/round-<r>/step-<s>/<clinician>/<channel>`."""
    notice: TherapistNotice
    """What it is about."""
    risk_tier: RiskTier
    """For the message."""
    clinician_id: str
    """Who."""
    channel: NoticeRoute
    """How."""
    address: str
    """Where (staff contact details, not the client's)."""
    code: str
    """The clinician's acknowledgment code (stored only by its hash)."""
    issued_at: AwareDatetime
    """When the code was first sent."""
    expires_at: AwareDatetime
    """When it stops working."""
    first_name: str | None
    """The client's first name, only when the practice allows it."""
    client_ref: str
    """The client's pseudonymous ref (the SMS form names it apart from the title)."""


class ResolutionDelivery(Model):
    """The one "resolved" message to one clinician a notice had told, on the route it used."""

    idempotency_key: str
    """`notice-<key>/resolved/<clinician>`: one per person per notice, however retried."""
    notice: TherapistNotice
    """Which notice (its title, in the notice's own words)."""
    clinician_id: str
    """Who."""
    channel: NoticeRoute
    """The route the notice reached them on."""
    address: str
    """Where (staff contact details, not the client's)."""
    client_ref: str
    """The client's pseudonymous ref."""
    reason: EndReason
    """What ended the notice's reason."""


class NoticeStateRecord(Model):
    """The notice's row in `notices` moves (a projection of its trail)."""

    notice: TherapistNotice
    """Which notice."""
    state: str
    """open, exhausted, acknowledged or resolved."""
    at: AwareDatetime
    """When."""
    risk_tier: RiskTier
    """For the row."""
    policy: str
    """For the row."""
    clinician_id: str | None = None
    """Who acknowledged or resolved."""
    via: str | None = None
    """How."""

