"""Offering caring contacts as a session closes unresolved for a client at risk.

The decision is pure (`caring.offered`: the practice's `offer`, the risk tier, the
outcome). With `confirm`, the therapist gets a task whose acceptance (`starter.py caring
start <session>`, or any entry point through `application.caring`) starts the series; with
`automatic`, the session starts it itself, as a child workflow abandoned at close (the
series outlives the session by a year). Either way the trail records `caring_offered`.
Sessions recorded before the offer replay without it (`workflow.patched("caring-offer")`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from missed_session.domain import caring, events
    from missed_session.domain.caring import CaringSeries
    from missed_session.domain.models import (
        CaringOffer,
        NoticeKind,
        Outcome,
        Priority,
        SessionBooking,
    )

from workflows.clinicians import Clinicians
from workflows.patches import Patches

CARING_OFFER = "caring-offer"
"""Patch id: an unresolved end offers caring contacts (older sessions replay without)."""


async def offer_caring(booking: SessionBooking, outcome: Outcome, clinicians: Clinicians,
                       record: Callable[[events.EventDetails], Awaitable[None]],
                       patches: Patches) -> None:
    """Offer (or start) the series the practice asks for after `outcome`, and record it."""
    mode = caring.offered(booking.protocol.caring_offer, booking.risk_tier, outcome)
    if mode is None or not patches.has(CARING_OFFER):
        return
    series_id = caring.series_id(booking.client.ref, booking.session_id)
    if mode is CaringOffer.CONFIRM:
        notice = clinicians.notice("caring-offer", NoticeKind.TASK, Priority.ROUTINE,
                                   caring.offer_task(booking.session_id), numbered=False)
        await clinicians.tell(notice)
        await record(events.CaringOffered(mode=mode, series_id=series_id, task=notice.key))
        return
    series = CaringSeries(
        series_id=series_id, client_ref=booking.client.ref, therapist_id=booking.therapist_id,
        origin_session_id=booking.session_id, started_by=caring.STARTED_BY_PROTOCOL,
        started_at=workflow.now(), time_zone=booking.client.time_zone,
        contact_window=booking.protocol.contact_window,
        time_scale=booking.protocol.time_scale)
    # Already running (started by hand): the series runs, as offered.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await workflow.start_child_workflow(
            "CaringContactsWorkflow", series, id=series_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    await record(events.CaringOffered(mode=mode, series_id=series_id))
