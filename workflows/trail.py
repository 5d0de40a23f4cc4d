"""A workflow's own audit trail: numbering, order, the write, and a refused write.

Both workflows write their trail through one `Trail` (the session's stream id is the
session id; a notice's, its notice key). Each event is numbered here, deterministically,
under the trail's lock, written by a local activity (a short idempotent PostgreSQL write,
recorded in the history as one marker with the event as recorded, for `audit replay`'s
cross-check), and then handed to `recorded` (the session folds it into its facts). A local
activity that wrote its row in a workflow task that then failed runs again in the task's
retry, with a later clock: the store keeps the first write and hands it back; after rows a
failed task left and the store marked superseded, the trail numbers on past them.

A refused write (a closed trail holds the place, an event the store cannot keep) means the
trail and the workflow have parted: going on would act without a record. `refused` is told
(the session gives the therapist an urgent task), and the workflow fails with the reason,
never silently.

News a message handler hears (a note, an opt-out, a notice's word, a joining session) is
written by `record_news`, which may decline it: the trail ends with `closed`, and the
workflow task that writes `closed` also completes the workflow. News that reaches the
server while that task runs makes the server refuse the completion (`UnhandledCommand`):
the task fails after its rows were written, and its retry applies the news first, from the
facts of the task before it. Recorded then, the news would take a place the closed trail
holds. So once the session has begun closing (`closing`: the facts say so, in the task and
in its retry alike) the trail takes no news. News that meets a closed trail anyway (the
store's `AuditConflict`) is let go, its number given back: so it goes when the closing task
closed on an update (a check-in), which the server aborts with the task, so that its retry
hears the news without the check-in until its sender sends it again. (A trail closed by
another writer is met again by the protocol's next event, which still fails loudly.) The
handler answers for news let go: an update is refused with the reason; a signal's sender
keeps its own record. Patch `trail-closing`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from missed_session.domain import events
    from missed_session.domain.models import AuditEvent

TRAIL_REFUSED = ("AuditConflict", "UnreadableEvent", "UnwritableEvent")
"""Audit write failures that no retry can mend (see `activities.audit`)."""

RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=list(TRAIL_REFUSED),
)
"""Records (audit, inbox, notices, plans) are retried until PostgreSQL takes them, however
long an outage lasts: none may be lost."""
RECORD_TIMEOUT = timedelta(seconds=30)
TRAIL_CLOSING = "trail-closing"
"""Patch id: news is not recorded once the session has begun closing, and news that meets a
trail a failed task closed is let go, where the session used to record it or fail."""


class Trail:
    """One workflow's trail: its next number, its lock, and how a write lands."""

    def __init__(self, stream_id: str, *,
                 recorded: Callable[[events.EventDetails, datetime], None] | None = None,
                 refused: Callable[[AuditEvent], Awaitable[None]] | None = None,
                 closing: Callable[[], bool] | None = None,
                 patched: Callable[[str], bool] = workflow.patched) -> None:
        self._stream_id = stream_id
        self._recorded = recorded
        self._refused = refused
        self._closing = closing
        self._patched = patched
        """Whether the workflow has begun closing, so that its trail takes no more news."""
        self._sequence = 0
        self.lock = asyncio.Lock()
        """Held while an event is numbered and written, so the trail is written in order."""
        self.first: Awaitable[None] | None = None
        """Writes that must land before any other (the session's no-show records)."""

    def next_event(self, details: events.EventDetails, at: datetime | None = None) -> AuditEvent:
        """The trail's next event, numbered here, deterministically; the caller holds the lock.

        `at`: when it happened, if not now: a time from the history (an activity's report,
        a timer's deadline), never the worker's clock, so a replay builds the same event.
        Under load a workflow task runs seconds after what it records; the trail keeps the
        time of the step, not of the bookkeeping.
        """
        self._sequence += 1
        return events.new_event(session_id=self._stream_id, sequence=self._sequence,
                                occurred_at=workflow.now() if at is None else at,
                                details=details)

    async def record(self, details: events.EventDetails, at: datetime | None = None) -> None:
        """Append the next event (happened at `at`, default now), after those that come first."""
        await self._append(details, at, news=False)

    async def record_news(self, details: events.EventDetails) -> bool:
        """Append what a message handler heard, unless the trail takes no more news.

        Asked as the handler starts, before it awaits anything: judged by the facts the
        message found, which a workflow task and its retry share. Returns whether the
        event is in the trail; if not, nothing was numbered and the handler answers for it.
        """
        if self._closing is not None and self._closing():
            return False
        return await self._append(details, None, news=True)

    async def _append(self, details: events.EventDetails, at: datetime | None, *,
                      news: bool) -> bool:
        await self.written_first()
        async with self.lock:
            event = self.next_event(details, at)
            return await self.written(event, workflow.execute_local_activity_method(
                AuditActivities.record_event, event,
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
            ), details, news=news)

    async def written(self, event: AuditEvent, write: Awaitable[AuditEvent | list[AuditEvent]],
                      *details: events.EventDetails, news: bool = False) -> bool:
        """Await a write of `event` (and any before it) and number on from where it landed.

        `details`: what the write records, in order, handed to `recorded` once it landed.
        `news`: `event` is news a handler heard, let go (False) if a closed trail holds its
        place (the caller holds the lock: its number is given back). True once it landed.
        """
        try:
            landed = await write
        except (ActivityError, ApplicationError) as error:
            # An activity's failure arrives wrapped; a local activity's, as itself.
            cause = error.cause if isinstance(error, ActivityError) else error
            if not (isinstance(cause, ApplicationError) and cause.type in TRAIL_REFUSED):
                raise
            if news and cause.type == "AuditConflict" and self._patched(TRAIL_CLOSING):
                # A task that failed after writing `closed` never heard this news.
                self._sequence = event.sequence - 1
                return False
            if self._refused is not None:
                await self._refused(event)
            raise ApplicationError(
                f"the audit trail refused event #{event.sequence} ({cause.type})"
                + ("; the therapist was given an urgent task" if self._refused else ""),
                type="TrailRefused", non_retryable=True,
            ) from error
        last = landed[-1] if isinstance(landed, list) else landed
        self._sequence = max(self._sequence, last.sequence)
        if self._recorded is not None:
            for each in details:
                self._recorded(each, event.occurred_at)
        return True

    async def written_first(self) -> None:
        """Wait for the writes that come first (if any)."""
        if self.first is not None:
            await self.first
