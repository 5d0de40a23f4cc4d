"""Running a step that reaches a person, and reading what came of it.

A step is one activity that a decision may stop in flight: `Steps.run` starts it
cancellable (it hears of a cancellation at its next heartbeat), waits for it or for `stop`,
and reports what happened as a plain value (`missed_session.domain.step_reports`): done,
refused by the client's consent history, uncertain, failed, or stopped. A stopped step may
still have had its effect; the workflow closes only once every stopped step has stopped
(`Steps.stopped`). The error classifiers live here and only here: both workflows read a
provider's answer the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority as TaskPriority
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutType
from temporalio.exceptions import TimeoutError as StepTimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.outreach import (
        CHANNEL_FAILED,
        CHANNEL_REJECTED,
        DELIVERY_UNCERTAIN,
        INVALID_CONTACT,
        LADDER_RUNNING,
        NO_CONSENT,
        UNCERTAIN_REASON,
        TextPolicyActivities,
    )
    from missed_session.contracts.outreach import StepOutcome, TextCheck
    from missed_session.domain import contact_window
    from missed_session.domain.facts import INVALID_CONTACT_REASON
    from missed_session.domain.models import CallResult, SessionBooking
    from missed_session.domain.person import RunningLadder
    from missed_session.domain.step_reports import (
        Done,
        Failed,
        Refused,
        StepReport,
        Stopped,
        Uncertain,
    )

from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT

OUTREACH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[INVALID_CONTACT, CHANNEL_REJECTED, CHANNEL_FAILED,
                               DELIVERY_UNCERTAIN],
)
"""Contract A: the provider's own answers end a step (an invalid contact, a refusal, K
failures counted by the activity itself: `ChannelFailed`; a possible delivery:
`DeliveryUncertain`); anything else (PostgreSQL or the ledger down, a dead worker) is our
outage, not the client's, and is retried for as long as it lasts, at most 30 s apart. The
contact window bounds a client step's retries (`closes`)."""
OUTREACH_PRIORITY = TaskPriority(priority_key=1)
"""Reaching a person goes ahead of bookkeeping when the task queue is backed up (a burst of
sessions whose grace periods expire together): records keep the default priority, 3."""
OUTREACH_TIMEOUT = timedelta(minutes=2)
OUTREACH_HEARTBEAT = timedelta(seconds=10)
"""Steps heartbeat while they wait on a provider: a dead worker's step is retried within
seconds, and a cancelled step hears of it at its next heartbeat."""
REPORTED: Any = StepOutcome | CallResult | None
"""What an outreach activity's result decodes as: histories recorded before the client
directory hold a bare CallResult (or null); the same code replays them unchanged."""


class Steps:
    """The steps a workflow started, and those stopped in flight."""

    def __init__(self) -> None:
        self._stopping: list[Awaitable[Any]] = []

    async def run(
        self,
        activity: Callable[..., Awaitable[Any]],
        arg: Any,
        *,
        stop: Callable[[], bool],
        closes: datetime | None = None,
        retry: RetryPolicy = OUTREACH_RETRY,
        limit: timedelta = OUTREACH_TIMEOUT,
        heartbeat: timedelta | None = OUTREACH_HEARTBEAT,
        result_type: Any = None,
    ) -> Any:
        """Run one activity so that `stop` can cancel it in flight; its result.

        Raises `StepStopped` when `stop()` came true first: the activity is cancelled and
        may still have had its effect. `closes`: no try starts, and no retry runs, after
        this instant. `result_type`: decode the result as this (by activity name).
        """
        options: dict[str, Any] = {
            "start_to_close_timeout": limit,
            "schedule_to_close_timeout": None if closes is None else closes - workflow.now(),
            "heartbeat_timeout": heartbeat,
            "retry_policy": retry,
            "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            "priority": OUTREACH_PRIORITY,
        }
        step = (workflow.start_activity_method(activity, arg, **options)
                if result_type is None else
                workflow.start_activity(activity.__name__, arg, result_type=result_type,
                                        **options))
        await workflow.wait_condition(lambda: step.done() or stop())
        if step.done():
            return step.result()
        # The protocol moves on now; the workflow closes only once the step has stopped.
        step.cancel()
        self._stopping.append(step)
        raise StepStopped

    async def report(self, activity: Callable[..., Awaitable[Any]], arg: Any, *,
                     stop: Callable[[], bool], closes: datetime | None = None) -> StepReport:
        """Run an outreach step (see `run`) and report what came of it."""
        try:
            value = await self.run(activity, arg, stop=stop, closes=closes,
                                   result_type=REPORTED)
        except StepStopped:
            return Stopped()
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == LADDER_RUNNING:
                raise LadderRunning(RunningLadder.model_validate(cause.details[0])) from None
            return failure(error)
        if isinstance(value, StepOutcome):
            return Done(value.result, value.consent_record, value.at)
        return Done(value)

    async def text_refusal(self, booking: SessionBooking, *,
                           stop: Callable[[], bool]) -> str | None:
        """The client-wide text rules, from every session's trail (opt-out; one a day)."""
        day_start, day_end = contact_window.local_day(workflow.now(), booking.client.time_zone)
        try:
            refusal: str | None = await self.run(
                TextPolicyActivities.text_refusal,
                TextCheck(client_ref=booking.client.ref, day_start=day_start, day_end=day_end),
                stop=stop, retry=RECORD_RETRY, limit=RECORD_TIMEOUT, heartbeat=None,
            )
        except StepStopped:
            return "outreach stopped"  # not recorded: the caller sees outreach has stopped
        return refusal

    async def stopped(self) -> None:
        """Wait until every step stopped in flight has heard so (or timed out)."""
        for step in self._stopping:
            with contextlib.suppress(ActivityError):
                await step


async def wait_until(condition: Callable[[], bool], until: datetime) -> bool:
    """Wait until `condition` holds or `until` passes; True if the condition held."""
    remaining = until - workflow.now()
    if condition() or remaining <= timedelta(0):
        return condition()
    try:
        await workflow.wait_condition(condition, timeout=remaining)
    except TimeoutError:
        return False
    return True


class StepStopped(Exception):  # noqa: N818 - a signal to the protocol, not an error
    """A step was cancelled in flight: outreach stopped (contact, or a decision)."""


class LadderRunning(Exception):  # noqa: N818 - a signal to the protocol, not an error
    """The session's first step was not taken: the same person's ladder runs (`leader`)."""

    def __init__(self, leader: RunningLadder) -> None:
        super().__init__(f"session {leader.session_id} of the same person is in outreach")
        self.leader = leader


def failure(error: ActivityError) -> Refused | Uncertain | Failed:
    """What a failed step's error says: refused, uncertain, or failed (and why)."""
    cause = error.cause
    kind = cause.type if isinstance(cause, ApplicationError) else None
    if kind == NO_CONSENT:
        assert isinstance(cause, ApplicationError)
        record = cause.details[0] if cause.details else None
        return Refused(cause.message, record if isinstance(record, str) else None)
    if kind == DELIVERY_UNCERTAIN:
        return Uncertain(UNCERTAIN_REASON)
    if isinstance(cause, StepTimeoutError) and cause.type is TimeoutType.SCHEDULE_TO_CLOSE:
        return Uncertain("the client's contact window closed while the step was tried")
    return Failed(failure_reason(error), invalid_contact=kind == INVALID_CONTACT)


def failure_reason(error: ActivityError) -> str:
    """A short, non-identifying reason for the audit trail."""
    cause = error.cause
    kind = cause.type if isinstance(cause, ApplicationError) else None
    if kind == INVALID_CONTACT:
        return INVALID_CONTACT_REASON
    if kind == CHANNEL_REJECTED:
        return "rejected by the channel"
    if error.retry_state is RetryState.TIMEOUT:
        return "the client's contact window closed while the step was retried"
    return "channel failed after retries"
