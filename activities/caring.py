"""The caring-contacts message: consent as of the day it is due, then one brief text.

Each message is one activity with an idempotency key (`<series id>/message-<n>`), so a
retried activity or workflow task reaches the provider's ledger as the same message and the
client never gets it twice. What the activity finds decides the series' course: a client who
attended a session since the series started, or who withdrew text consent (a STOP), ends
it; a message that may not go today for another reason (no mobile number, no consent record
and a default that says no) is skipped and the series goes on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import HEARTBEAT_SECONDS, heartbeating
from activities.outreach import CHANNEL_UNAVAILABLE, Sender
from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
    TextProvider,
)
from missed_session.contracts.caring import CaringRequest, CaringResult
from missed_session.domain import caring
from missed_session.domain.caring import EndReason
from missed_session.domain.clients import ConsentDecision, ConsentDefaults, reach
from missed_session.domain.models import Channel
from missed_session.store.attendance import AttendanceStore
from missed_session.store.clients import ClientDirectory

log = structlog.get_logger(__name__)

__all__ = [
    "CaringActivities",
    "CaringRequest",
    "CaringResult",
]
"""The activities, and the payloads they take and return (defined in `contracts`)."""


class CaringActivities:
    """Sends caring messages through the practice's text provider."""

    def __init__(self, texts: TextProvider, sender: Sender, pool: asyncpg.Pool, *,
                 consent_defaults: ConsentDefaults | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self._texts = texts
        self._sender = sender
        self._pool = pool
        self._directory = ClientDirectory(pool)
        self._defaults = consent_defaults or ConsentDefaults()
        self._heartbeat_seconds = heartbeat_seconds

    @activity.defn
    async def send_caring_contact(  # noqa: PLR0911 - one exit per outcome
            self, request: CaringRequest) -> CaringResult:
        """Send message `index` if the client may get it today; say why not otherwise."""
        if await AttendanceStore(self._pool).attended_since(request.client_ref, request.since):
            return CaringResult(end=EndReason.ATTENDED)
        record = await self._directory.get(request.client_ref)
        if record is None:
            return CaringResult(skipped="the client is not in the directory")
        history = await self._directory.history(request.client_ref)
        found = reach(record, history, Channel.TEXT, at=datetime.now(UTC),
                      defaults=self._defaults)
        if isinstance(found, ConsentDecision):
            if found.record_id is not None:  # a withdrawal on record: the client said stop
                return CaringResult(end=EndReason.STOPPED_BY_CLIENT,
                                    consent_record=found.record_id, skipped=found.reason)
            return CaringResult(skipped=found.reason)
        try:
            body = caring.message(request.index, record.first_name, self._sender.name)
        except ValueError as error:
            return CaringResult(skipped=str(error))
        try:
            await heartbeating(
                self._texts.send_text(request.idempotency_key, request.series_id,
                                      found.address, body),
                every=self._heartbeat_seconds)
        except ChannelUnavailableError as error:
            raise ApplicationError(f"the provider failed ({error})",
                                   type=CHANNEL_UNAVAILABLE) from None
        except DeliveryUncertainError:
            # Never re-sent: the provider may have it (as outreach steps are treated).
            return CaringResult(skipped="delivery uncertain; not sent again",
                                consent_record=found.decision.record_id)
        except (InvalidContactError, ChannelRejectedError) as error:
            log.info("caring_contact_refused", series_id=request.series_id,
                     error_type=type(error).__name__)
            return CaringResult(skipped=f"the provider refused it ({type(error).__name__})")
        return CaringResult(sent=True, consent_record=found.decision.record_id)
