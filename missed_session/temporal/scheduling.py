"""Starting a session's workflow exactly once, whoever asks (CLI, HTTP, FHIR, HL7)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from missed_session.domain.intake import check_bookable
from missed_session.domain.models import SessionBooking, SessionResult
from missed_session.temporal import search_attributes

SESSION_WORKFLOW = "SessionWorkflow"
"""The workflow type by name: this layer must not import the workflow code."""


class Scheduled(StrEnum):
    """What scheduling a booking did."""

    STARTED = "started"
    ALREADY_SCHEDULED = "already_scheduled"


async def schedule_session(
    client: Client, booking: SessionBooking, *, task_queue: str, now: datetime,
    contact_key: str | None = None,
) -> tuple[Scheduled, WorkflowHandle[Any, SessionResult]]:
    """Start the session's workflow unless it exists (running or closed).

    The workflow id is derived from the session id and never reused, so a scheduling
    system that sends the same booking twice gets the first workflow back, not a second
    protocol for the same session. Raises BookingRejectedError before anything starts when
    the booking's grace period is already over. `contact_key` (a keyed hash of the
    client's phone) lets an inbound text find the session.
    """
    check_bookable(booking, now)
    try:
        handle = await client.start_workflow(
            SESSION_WORKFLOW,
            booking,
            result_type=SessionResult,
            id=booking.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=summary(booking),
            search_attributes=search_attributes.initial(booking, contact_key=contact_key),
        )
    except WorkflowAlreadyStartedError:
        return Scheduled.ALREADY_SCHEDULED, client.get_workflow_handle(
            booking.workflow_id, result_type=SessionResult
        )
    return Scheduled.STARTED, handle


def summary(booking: SessionBooking) -> str:
    """The one line a supervisor reads in the Web UI's list: pseudonymous by design."""
    return (
        f"Session {booking.session_id} · client {booking.client.ref} · "
        f"therapist {booking.therapist_id} · {booking.risk_tier.value} risk · "
        f"starts {booking.start:%Y-%m-%d %H:%M %Z}"
    )
