"""Activities of the notice workflow: its plan, who a rung notifies, delivery, its state.

The roster is read from PostgreSQL when each rung climbs (who is on call *then*), and each
message goes out through the worker's channels (simulated, webhook, Twilio, SMTP) under an
idempotency key of its own, so the delivery ledger keeps a retried step from reaching a
clinician twice. The code a clinician is sent is stored by its hash only.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.outreach import CHANNEL_REJECTED, DELIVERY_UNCERTAIN, INVALID_CONTACT
from missed_session.channels.base import (
    ChannelRejectedError,
    DeliveryUncertainError,
    InvalidContactError,
    MessageProvider,
    PhoneProvider,
)
from missed_session.domain import notices, roster
from missed_session.domain.models import (
    AwareDatetime,
    Model,
    RiskTier,
    TherapistNotice,
)
from missed_session.domain.notices import EndReason, Policy, Target
from missed_session.domain.roster import NoticeRoute, Role
from missed_session.store.notices import NoticeStore, RosterStore


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


@dataclass(frozen=True)
class NoticeLinks:
    """Signed acknowledgment links: the practice's endpoint and the HMAC secret."""

    base_url: str
    """e.g. `https://notices.example.org/notices/ack`."""
    secret: bytes
    """Shared with the endpoint that verifies them."""

    def link(self, notice_key: str, clinician_id: str, expires: datetime) -> str:
        """The signed link for one clinician and notice."""
        stamp = int(expires.timestamp())
        query = urllib.parse.urlencode({
            "notice": notice_key, "clinician": clinician_id, "expires": stamp,
            "signature": notices.link_signature(self.secret, notice_key, clinician_id, stamp),
        })
        return f"{self.base_url}?{query}"


class NoticeActivities:
    """The roster, the channels and the notice tables."""

    def __init__(self, rosters: RosterStore, store: NoticeStore, phone: PhoneProvider,
                 messages: MessageProvider, links: NoticeLinks | None = None) -> None:
        self._rosters = rosters
        self._store = store
        self._phone = phone
        self._messages = messages
        self._links = links

    @activity.defn
    async def plan_notice(self, request: NoticePlanRequest) -> NoticePlan | None:
        """The notice's policy from the current roster; None without a roster (inbox only)."""
        current = await self._rosters.current()
        if current is None or current.roster is None:
            return None
        rules = current.notices
        return NoticePlan(
            policy=rules.policy_for(request.notice.priority, request.risk_tier),
            include_first_name=rules.include_first_name,
            ack_code_hours=rules.ack_code_hours,
            roster_version=current.version,
        )

    @activity.defn
    async def notice_recipients(self, query: RecipientQuery) -> Recipients:
        """Who the rung notifies now, by the roster in force now."""
        current = await self._rosters.current()
        if current is None or current.roster is None:
            return Recipients(recipients=(), reason="no roster is loaded")
        practice = current.roster
        if query.target is Target.THERAPIST:
            therapist = practice.clinician(query.therapist_id)
            if therapist is None:
                return Recipients(recipients=(), reason="the therapist is not on the roster")
            if roster.on_leave(practice, therapist.id, query.at):
                return Recipients(recipients=(), reason="the therapist is on leave")
            found: tuple[roster.Clinician, ...] = (therapist,)
        elif query.target is Target.ON_CALL:
            found = roster.on_call(practice, query.at)
            if not found:
                return Recipients(recipients=(), reason="nobody is on call")
        else:
            found = roster.supervisors_for(practice, query.therapist_id, query.at)
            if not found:
                return Recipients(recipients=(), reason="no clinical supervisor is available")
        return Recipients(recipients=tuple(
            Recipient(
                clinician_id=c.id, role=c.role, sms=c.sms,
                channels=tuple((ch, address) for ch in c.channels()
                               if (address := c.address(ch)) is not None),
            )
            for c in found
        ))

    @activity.defn
    async def deliver_notice(self, delivery: NoticeDelivery) -> None:
        """Send one message; the code's hash is stored first, so a reply finds its notice.

        Heartbeats while the provider works, so a dead worker's send is retried within
        seconds (the delivery ledger resumes it, never sends it twice). A send the provider
        may have accepted is :data:`DELIVERY_UNCERTAIN`: never re-sent, recorded as such.
        """
        notice = delivery.notice
        await self._store.issued(
            notice_key=notice.key, clinician_id=delivery.clinician_id,
            code_hash=notices.code_hash(delivery.code), issued_at=delivery.issued_at,
            expires_at=delivery.expires_at,
        )
        link = (self._links.link(notice.key, delivery.clinician_id, delivery.expires_at)
                if self._links is not None and delivery.channel is NoticeRoute.EMAIL
                else None)
        text = notices.message(
            priority=notice.priority, risk_tier=delivery.risk_tier, title=notice.title,
            kind=notice.kind, code=delivery.code, first_name=delivery.first_name, link=link,
        )
        key, to = delivery.idempotency_key, delivery.address
        try:
            if delivery.channel in {NoticeRoute.SMS, NoticeRoute.PAGER}:
                short = notices.sms(
                    priority=notice.priority, risk_tier=delivery.risk_tier, title=notice.title,
                    kind=notice.kind, code=delivery.code, client_ref=delivery.client_ref,
                    first_name=delivery.first_name,
                )
                await heartbeating(self._messages.send_text(key, notice.session_id, to, short))
            elif delivery.channel is NoticeRoute.VOICE:
                await heartbeating(self._phone.deliver_message(key, notice.session_id, to, text))
            else:
                subject = f"{notice.priority.value.upper()} notice {notice.key}"
                await heartbeating(self._messages.send_email(key, notice.session_id, to,
                                                             subject, text))
        except (InvalidContactError, ChannelRejectedError, DeliveryUncertainError) as error:
            raise _translated(error) from None

    @activity.defn
    async def deliver_resolution(self, delivery: ResolutionDelivery) -> None:
        """Tell one clinician the notice is resolved, and why, in one short message.

        The words are the notice's title and the reason, nothing more (no code: there is
        nothing to acknowledge). Sent under its own idempotency key, so the delivery ledger
        keeps a retried or restarted resolution from reaching anyone twice; failures are
        translated as for the notice itself.
        """
        notice = delivery.notice
        text = notices.resolved_text(title=notice.title, client_ref=delivery.client_ref,
                                     reason=delivery.reason)
        key, to = delivery.idempotency_key, delivery.address
        try:
            if delivery.channel in {NoticeRoute.SMS, NoticeRoute.PAGER}:
                await heartbeating(self._messages.send_text(key, notice.session_id, to, text))
            elif delivery.channel is NoticeRoute.VOICE:
                await heartbeating(self._phone.deliver_message(key, notice.session_id, to, text))
            else:
                subject = f"RESOLVED notice {notice.key}"
                await heartbeating(self._messages.send_email(key, notice.session_id, to,
                                                             subject, text))
        except (InvalidContactError, ChannelRejectedError, DeliveryUncertainError) as error:
            raise _translated(error) from None

    @activity.defn
    async def record_notice_state(self, record: NoticeStateRecord) -> None:
        """Move the notice's row (idempotent; never moves back)."""
        notice = record.notice
        if record.state == "open":
            await self._store.opened(
                key=notice.key, session_id=notice.session_id, therapist_id=notice.therapist_id,
                kind=notice.kind.value, priority=notice.priority.value,
                risk_tier=record.risk_tier.value, policy=record.policy, at=record.at,
            )
            return
        await self._store.moved(notice.key, record.state, record.at,
                                clinician_id=record.clinician_id, via=record.via)


def _translated(error: Exception) -> ApplicationError:
    """A channel's refusal as the workflow reads it: never retried."""
    kind = (CHANNEL_REJECTED if isinstance(error, ChannelRejectedError) else
            DELIVERY_UNCERTAIN if isinstance(error, DeliveryUncertainError) else
            INVALID_CONTACT)
    return ApplicationError(str(error), type=kind, non_retryable=True)


def notice_workflow_id(notice_key: str) -> str:
    """The notice workflow's id: `notice-<session id>/<name>`."""
    return f"notice-{notice_key}"

