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
from missed_session.contracts.notices import (
    NoticeDelivery,
    NoticePlan,
    NoticePlanRequest,
    NoticeRequest,
    NoticeStateRecord,
    Recipient,
    RecipientQuery,
    Recipients,
    ResolutionDelivery,
    notice_workflow_id,
)
from missed_session.domain import notices, roster
from missed_session.domain.notices import Target
from missed_session.domain.roster import NoticeRoute
from missed_session.store.notices import NoticeStore, RosterStore

__all__ = [
    "NoticeActivities",
    "NoticeDelivery",
    "NoticeLinks",
    "NoticePlan",
    "NoticePlanRequest",
    "NoticeRequest",
    "NoticeStateRecord",
    "Recipient",
    "RecipientQuery",
    "Recipients",
    "ResolutionDelivery",
    "notice_workflow_id",
]
"""The activities, and the payloads they take and return (defined in `contracts`)."""


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

