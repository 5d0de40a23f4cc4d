"""Caring contacts: start a series after an unresolved session, end it, see where it is.

A clinician confirms a series (the protocol offers it with a task, `offer = "confirm"`, which
starting the series resolves; or starts it itself, `offer = "automatic"`, the practice's
standing decision): the session must have closed unresolved (unreachable), or the clinician
chooses it for another no-show with a reason. One series per session's end (its id is derived from
the client and the session), so starting it twice is `already_scheduled`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from missed_session.application import notices
from missed_session.application.results import Result, ResultKind
from missed_session.domain import caring, events
from missed_session.domain.caring import CaringSeries
from missed_session.domain.models import ClinicianDecision
from missed_session.domain.notices import Resolution
from missed_session.store.audit import AuditStore
from missed_session.store.clients import ClientDirectory

WORKFLOW = "CaringContactsWorkflow"


class CaringContacts:
    """The use cases of caring-contacts series, over one Temporal client and pool."""

    def __init__(self, client: Client, pool: asyncpg.Pool, *, task_queue: str,
                 clock: Callable[[], datetime], time_scale: float = 1) -> None:
        self._client = client
        self._pool = pool
        self._task_queue = task_queue
        self._clock = clock
        self._time_scale = time_scale

    async def start(self, session_id: str, decision: ClinicianDecision, *,  # noqa: PLR0911
                    chosen: bool = False, days: tuple[int, ...] = caring.DEFAULT_DAYS,
                    ) -> Result:
        """Start the series that follows `session_id`'s end, confirmed by a clinician.

        `days`: the schedule (the practice's; the default is eleven messages in a year).
        """
        said = [events.read(e) for e in events.live(await AuditStore(self._pool).trail(
            session_id))]
        scheduled = next((d for d in said if isinstance(d, events.Scheduled)), None)
        closed = next((d for d in said if isinstance(d, events.Closed)), None)
        if scheduled is None:
            return Result(ResultKind.NOT_FOUND, f"no session {session_id} in the audit trail",
                          session_id)
        if closed is None:
            return Result(ResultKind.REFUSED,
                          f"session {session_id} has not closed: a series follows its end",
                          session_id)
        why_not = caring.may_offer(closed.outcome, clinician_choice=chosen)
        if why_not is not None:
            return Result(ResultKind.REFUSED, why_not, session_id)
        record = await ClientDirectory(self._pool).get(scheduled.client_ref)
        if record is None:
            return Result(ResultKind.REFUSED,
                          f"client {scheduled.client_ref} is not in the client directory: a "
                          "series texts the directory's number with consent as of each day",
                          session_id)
        series = CaringSeries(
            series_id=caring.series_id(scheduled.client_ref, session_id),
            client_ref=scheduled.client_ref, therapist_id=scheduled.therapist_id,
            origin_session_id=session_id, started_by=decision.clinician_id,
            started_at=self._clock(), time_zone=record.time_zone,
            time_scale=self._time_scale, days=days,
        )
        try:
            await self._client.start_workflow(
                WORKFLOW, series, id=series.series_id, task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
        except WorkflowAlreadyStartedError:
            return Result(ResultKind.ALREADY_SCHEDULED,
                          f"series {series.series_id} was already started", session_id,
                          data={"series_id": series.series_id})
        except RPCError as error:
            return Result(ResultKind.UNAVAILABLE, f"Temporal refused the request: {error}",
                          session_id)
        offer = next((d for d in said if isinstance(d, events.CaringOffered)), None)
        accepted = ""
        if offer is not None and offer.task is not None:  # the therapist's task: done
            try:
                answer = await notices.resolve(
                    self._client, self._pool, offer.task,
                    Resolution(clinician_id=decision.clinician_id,
                               outcome="accepted: series started"))
            except RPCError:  # the series runs; the task stays for its clinician
                answer = None
            accepted = (f"; offer task {offer.task} resolved"
                        if answer is not None and answer.kind is ResultKind.APPLIED else "")
        return Result(ResultKind.STARTED,
                      f"started series {series.series_id}: {len(series.days)} messages over "
                      f"{series.days[-1]} days{accepted}", session_id,
                      data={"series_id": series.series_id})

    async def end(self, series_id: str, decision: ClinicianDecision) -> Result:
        """A clinician ends a series."""
        handle = self._client.get_workflow_handle(series_id)
        try:
            answer = await handle.execute_update("end_series", decision)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            return Result(ResultKind.REFUSED, str(getattr(cause, "message", cause)))
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return Result(ResultKind.NOT_FOUND, f"no running series {series_id}")
            return Result(ResultKind.UNAVAILABLE, f"Temporal refused the request: {error}")
        return Result(ResultKind.APPLIED, f"series {series_id}: {answer}",
                      data={"series_id": series_id})

    async def show(self, series_id: str) -> Result:
        """The series' trail (PostgreSQL only)."""
        trail = tuple(await AuditStore(self._pool).trail(series_id))
        if not trail:
            return Result(ResultKind.NOT_FOUND, f"no series {series_id}")
        return Result(ResultKind.APPLIED, f"{len(trail)} audit events for series {series_id}",
                      trail=trail, data={"series_id": series_id})
