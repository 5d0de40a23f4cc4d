"""A caring-contacts series: brief messages over months after an unresolved episode.

Read `run` as the series: wait until the next message is due, then until the client's
contact window opens, send it if the client may get it that day (the activity checks
consent as of then), and go on to the next, starting the workflow afresh after each message
(continue-as-new) so a year-long series keeps a short history. It ends when the schedule is
done, when the client says stop (a STOP, a withdrawal), when the client attends a session,
or when a clinician ends it (the `end_series` update). Every message, skip and end is in
the series' own audit trail, whose id is the series id.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from activities.caring import CaringActivities
    from missed_session.contracts.caring import CaringRequest, CaringResult
    from missed_session.domain import caring, events
    from missed_session.domain.caring import CaringSeries, EndReason
    from missed_session.domain.contact_window import next_allowed
    from missed_session.domain.models import ClinicianDecision, Model, TextReply

from workflows.caring_replies import tell_therapist

RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(minutes=1),
                           non_retryable_error_types=["AuditConflict"])
"""As the session's records: retried until PostgreSQL takes them."""
RECORD_TIMEOUT = timedelta(seconds=30)
SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                         maximum_interval=timedelta(minutes=10))
"""A provider or database outage is waited out: the message is days apart from the next."""
SEND_TIMEOUT = timedelta(minutes=2)
SEND_HEARTBEAT = timedelta(seconds=20)


class SeriesView(Model):
    """Answer to the `state` query."""

    series_id: str
    """The series."""
    next_index: int
    """The next message (from 0)."""
    messages: int
    """How many the schedule holds."""
    sent: int
    """Sent so far."""
    ended: str | None
    """Why it ended, once it has."""


@workflow.defn(name="CaringContactsWorkflow")
class CaringContactsWorkflow:
    """One client's series, in one place: its input carries the series' state."""

    def __init__(self) -> None:
        self._series: CaringSeries | None = None
        self._ending: ClinicianDecision | None = None
        self._ended: str | None = None
        self._recording = asyncio.Lock()
        """Held while an event is numbered and written: a reply's record and the series'
        own never take the same place in the trail."""

    @workflow.run
    async def run(self, series: CaringSeries) -> str:
        """The series from its next message to its end (or to the next continue-as-new)."""
        self._series = series
        if series.next_index == 0 and series.sent == 0 and series.next_sequence == 1:
            await self._record(events.CaringStarted(
                client_ref=series.client_ref, origin_session_id=series.origin_session_id,
                started_by=series.started_by, messages=len(series.days),
                last_day=series.days[-1]))
        if series.next_index >= len(series.days):
            return await self._end(EndReason.COMPLETED)
        if not await self._wait_until(caring.due(series, series.next_index)):
            return await self._end_by_clinician()
        opens = next_allowed(workflow.now(), series.time_zone, series.contact_window)
        if not await self._wait_until(opens):
            return await self._end_by_clinician()
        result = await self._send(series.next_index)
        if result.end is not None:
            return await self._end(result.end)
        if result.sent:
            await self._record(events.CaringSent(index=series.next_index,
                                                 consent_record=result.consent_record))
        else:
            await self._record(events.CaringSkipped(index=series.next_index,
                                                    reason=result.skipped or "not sent"))
        self._series = self._state().model_copy(update={
            "next_index": series.next_index + 1, "sent": series.sent + int(result.sent)})
        if self._ending is not None:
            return await self._end_by_clinician()
        await workflow.wait_condition(workflow.all_handlers_finished)
        # A new run for the next message keeps a year-long series' history short.
        return workflow.continue_as_new(self._state())

    @workflow.update
    async def end_series(self, decision: ClinicianDecision) -> str:
        """A clinician ends the series (the client re-engaged, or it no longer fits)."""
        self._ending = decision
        return "the series ends"

    @end_series.validator
    def _validate_end_series(self, decision: ClinicianDecision) -> None:
        del decision
        if self._ended is not None:
            msg = f"the series already ended ({self._ended})"
            raise ValueError(msg)

    @workflow.update
    async def client_replied(self, reply: TextReply) -> str:
        """The client answered a caring message: the therapist gets a notice of it.

        The reply's words go to the series' trail (health data, never logged), not into
        the notice, which may travel by text or email.
        """
        series = self._state()
        replies = series.replies + 1
        self._series = series.model_copy(update={"replies": replies})
        key = await tell_therapist(self._state(), replies)
        await self._record(events.CaringReplied(note=reply.body, notice=key))
        return "the therapist has a notice of the reply"

    @client_replied.validator
    def _validate_client_replied(self, reply: TextReply) -> None:
        del reply
        if self._ended is not None:
            msg = f"the series already ended ({self._ended})"
            raise ValueError(msg)

    @workflow.query
    def state(self) -> SeriesView:
        """Where the series is."""
        series = self._state()
        return SeriesView(series_id=series.series_id, next_index=series.next_index,
                          messages=len(series.days), sent=series.sent, ended=self._ended)

    async def _wait_until(self, at: datetime) -> bool:
        """Sleep until `at` (compressed by the time scale); False if a clinician ended it."""
        wait = (at - workflow.now()).total_seconds()
        if wait <= 0:
            return self._ending is None
        try:
            await workflow.wait_condition(lambda: self._ending is not None,
                                          timeout=timedelta(seconds=wait))
        except TimeoutError:
            return True
        return False

    async def _send(self, index: int) -> CaringResult:
        series = self._state()
        return await workflow.execute_activity_method(
            CaringActivities.send_caring_contact,
            CaringRequest(idempotency_key=f"{series.series_id}/message-{index}",
                          series_id=series.series_id, client_ref=series.client_ref,
                          index=index, since=series.started_at),
            start_to_close_timeout=SEND_TIMEOUT, heartbeat_timeout=SEND_HEARTBEAT,
            retry_policy=SEND_RETRY,
        )

    async def _end_by_clinician(self) -> str:
        assert self._ending is not None
        return await self._end(EndReason.CLINICIAN, by=self._ending.clinician_id,
                               note=self._ending.reason)

    async def _end(self, reason: EndReason, *, by: str | None = None, note: str = "") -> str:
        series = self._state()
        self._ended = reason.value
        await self._record(events.CaringEnded(reason=reason.value, sent=series.sent, by=by,
                                              note=note))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return reason.value

    async def _record(self, details: events.EventDetails) -> None:
        """Append the next event of the series' own trail (a local activity), one at a time."""
        async with self._recording:
            series = self._state()
            event = events.new_event(session_id=series.series_id,
                                     sequence=series.next_sequence,
                                     occurred_at=workflow.now(), details=details)
            recorded = await workflow.execute_local_activity_method(
                AuditActivities.record_event, event,
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
            )
            # After rows a failed workflow task left (superseded), the trail goes on past them.
            self._series = self._state().model_copy(update={
                "next_sequence": max(series.next_sequence, recorded.sequence) + 1})

    def _state(self) -> CaringSeries:
        assert self._series is not None
        return self._series
