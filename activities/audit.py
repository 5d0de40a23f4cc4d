"""Activities that write the audit history."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notices import NoticeActivities
from activities.outreach import LadderActivities
from missed_session.contracts.audit import ClosingRecord, NoShowDocumented, NoShowRecord
from missed_session.contracts.notices import NoticePlanRequest
from missed_session.domain import events, person
from missed_session.domain.models import (
    AuditEvent,
)
from missed_session.metrics import ServiceMetrics, is_first_outreach
from missed_session.store import write_errors
from missed_session.store.append import AuditConflictError, Recorded
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.inbox import InboxStore

__all__ = [
    "AuditActivities",
    "ClosingRecord",
    "NoShowDocumented",
    "NoShowRecord",
]
"""The activities, and the payloads they take and return (defined in `contracts`)."""


class AuditActivities:
    """Append audit events; retried until PostgreSQL takes them, never written twice."""

    def __init__(self, store: AuditStore, inbox: InboxStore, metrics: ServiceMetrics,
                 ladders: LadderActivities | None = None,
                 notices: NoticeActivities | None = None) -> None:
        self._store = store
        self._inbox = inbox
        self._metrics = metrics
        self._ladders = ladders
        self._notices = notices

    @activity.defn
    async def record_event(self, event: AuditEvent) -> AuditEvent:
        """Append one event to the session's trail, and count it once it is new.

        Returns the event as recorded, at the place it holds (the workflow numbers its next
        event after it): the workflow runs this as a local activity, whose input the
        history does not keep, so the result is what `audit replay` checks the row
        against. When a workflow task wrote the event and then failed (a worker killed, a
        server restart), its retry builds the event again with a later time; the first
        write stands, and its time is what the history keeps. When the retry took another
        branch, the rows the failed task wrote are superseded and the event follows them
        (`store.append.record`, the one append path every writer uses).
        """
        details = _readable(event)
        with _refused_for_good():
            recorded = await self._store.record([event], expiry=is_first_outreach(details))
        self._observe_new(recorded, [details])
        return recorded.events[0]

    @activity.defn
    async def record_closing(self, record: ClosingRecord) -> AuditEvent:
        """Append the `closed` event and the attendance row in one transaction.

        Returns the event as recorded, as `record_event` does.
        """
        details = _readable(record.event)
        with _refused_for_good():
            recorded = await self._store.record([record.event], attendance=Attendance(
                client_ref=record.client_ref,
                therapist_id=record.therapist_id,
                start=record.start,
                outcome=record.outcome,
            ))
        self._observe_new(recorded, [details])
        return recorded.events[0]

    @activity.defn
    async def record_no_show(self, record: NoShowRecord) -> list[AuditEvent]:
        """Deliver the therapist's alert, then append the no-show's two events.

        Each step is idempotent (the notice key, the events' places), so a retry completes
        what a crash left. Returns the events as recorded, as `record_event` does.
        """
        pair = [record.expired, record.alerted]
        details = [_readable(event) for event in pair]
        await self._inbox.add_notice(record.notice)
        with _refused_for_good():
            recorded = await self._store.record(pair)
        self._observe_new(recorded, details)
        return list(recorded.events)

    @activity.defn
    async def document_no_show(self, record: NoShowRecord) -> NoShowDocumented:
        """`record_no_show`, with the alert naming the person's running ladder, if any.

        The question is asked here, beside the first call, instead of in a round before
        it; the first step asks it again and its answer decides the ladder, so the two can
        differ only for a ladder that began or ended between the two reads (see
        docs/protocol.md). The alert's climb is planned here too when asked
        (`plan_for`): after its inbox row is written, as `plan_notice` would plan it.
        """
        notice = record.notice
        if record.ladder is not None and self._ladders is not None:
            leader = await self._ladders.find(record.ladder)
            if leader is not None:
                notice = notice.model_copy(update={"title": person.client_title(
                    person.alert_title(leader.session_id), record.ladder.client_ref)})
        recorded = await self.record_no_show(record.model_copy(update={"notice": notice}))
        plan = None
        if record.plan_for is not None:
            if self._notices is None:  # no plan would read as "no roster": the alert unclimbed
                msg = "asked to plan the alert's climb without the notice activities"
                raise ApplicationError(msg, type="NoNoticePlanner", non_retryable=True)
            plan = await self._notices.plan_notice(
                NoticePlanRequest(notice=notice, risk_tier=record.plan_for))
        return NoShowDocumented(events=recorded, notice=notice, plan=plan)

    def _observe_new(self, recorded: Recorded,
                     details: list[events.EventDetails]) -> None:
        """Count the events this write put in the trail (a retry's are counted already).

        A first outreach step also ends the wait the first-outreach metric measures: from
        the grace period's expiry, which the append that wrote the step read in the same
        statement (`expiry=True`), so the metric costs no read of the trail.
        """
        for event, event_details in zip(recorded.events, details, strict=True):
            if event not in recorded.new:
                continue
            self._metrics.observe(event_details)
            if is_first_outreach(event_details) and recorded.expired_at is not None:
                self._metrics.first_outreach(event.occurred_at - recorded.expired_at)


def _readable(event: AuditEvent) -> events.EventDetails:
    """The event's typed details; a row its own model cannot read is never written.

    Not retried: the same event would fail the same way, and only a code defect produces it.
    """
    try:
        return events.read(event)
    except events.UnreadableEventError as error:
        raise _not_retried(error, "UnreadableEvent") from None


@contextlib.contextmanager
def _refused_for_good() -> Iterator[None]:
    """Turn the store's refusals that no retry can mend into non-retryable errors.

    Another event at this place (`AuditConflict`), or a write that can only fail the same
    way again (`UnwritableEvent`: a NUL PostgreSQL cannot store, data the store refuses;
    `write_errors.is_deterministic`): retried forever it would hold the session still with
    no one told. The workflow stops and tells a person instead. Outages and other passing
    errors stay retryable.
    """
    try:
        yield
    except AuditConflictError as error:
        raise _not_retried(error, "AuditConflict") from None
    except Exception as error:
        if not write_errors.is_deterministic(error):
            raise
        # Not the server's message: it can quote the value it refused.
        state = getattr(error, "sqlstate", None)
        refused = RuntimeError(
            f"the store cannot keep this event ({type(error).__name__}"
            + (f", SQLSTATE {state})" if state else ")")
        )
        raise _not_retried(refused, "UnwritableEvent") from None


def _not_retried(error: Exception, kind: str) -> ApplicationError:
    """A failure the workflow must see at once: a retry would fail the same way."""
    return ApplicationError(str(error), type=kind, non_retryable=True)
