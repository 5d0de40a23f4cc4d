"""Escalation carried out: the emergency contact called, or the decision left to a person.

Whether to escalate is decided in one pure function (`missed_session.domain.escalation`:
`next_escalation`, and `emergency_call` for what a call came to); this is only the doing of
it, for the session workflow: one call at a time (`_escalating`), each with its own
idempotency key, what the phone said and what it meant recorded, and an urgent task to the
therapist whenever escalation cannot happen or may not have reached the contact.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.outreach import OutreachActivities
    from missed_session.contracts.outreach import EscalationRequest
    from missed_session.domain import escalation, events
    from missed_session.domain.escalation import Basis, Block, Escalate, MaybeTold, NotTold, Wait
    from missed_session.domain.facts import SessionFacts
    from missed_session.domain.models import (
        ClinicianDecision,
        NoticeKind,
        Priority,
        SessionBooking,
        SessionStatus,
    )
    from missed_session.domain.step_reports import StepReport

from workflows.clinician_wait import AWAIT_CLINICIAN
from workflows.clinicians import Clinicians
from workflows.notice_reasons import NoticeReasons
from workflows.patches import Patches
from workflows.steps import Steps


class Escalating:
    """The session workflow's escalation steps (a mixin: its state is the session's)."""

    _booking: SessionBooking
    _facts: SessionFacts
    _clinicians: Clinicians
    _reasons: NoticeReasons
    _steps: Steps
    _escalating: asyncio.Lock
    _patches: Patches
    _escalation_calls: int
    """Calls to the emergency contact so far; each has its own idempotency key."""

    if TYPE_CHECKING:  # what the session provides; no runtime stubs to shadow it in the MRO
        async def _record(self, details: events.EventDetails) -> None: ...
        def _plan(self, status: SessionStatus, action: str | None,
                  at: datetime | None) -> None: ...
        async def _defer(self, action: str, opens: datetime) -> bool: ...
        def _stops(self) -> bool: ...
        def _decided(self) -> bool: ...
        async def _record_call(self, report: StepReport, basis: Basis) -> None: ...
        async def _ask_unasked(self) -> None: ...

    async def _consider_escalation(self, attempt: int | None, *, deferred: bool = False) -> None:
        """The ladder's turn to escalate: after `attempt` failed (None: all did)."""
        decision = escalation.next_escalation(
            self._facts, self._booking, workflow.now(), attempt, None, deferred=deferred
        )
        if decision is None:
            return
        await self._ask_unasked()  # a joiner's ladder escalates nowhere: its leader's does
        self._plan(SessionStatus.ESCALATION, "escalate", workflow.now())
        if isinstance(decision, Wait) and not await self._defer("escalation", decision.until):
            return
        await self._escalate()

    async def _escalate(self, override: ClinicianDecision | None = None) -> str:
        """Carry out the escalation decision, one at a time; what happened, in words."""
        async with self._escalating:
            decision = escalation.next_escalation(
                self._facts, self._booking, workflow.now(), None, override
            )
            if isinstance(decision, Escalate):  # the therapist is told of the call
                return await self._reasons.told_of_call(
                    await self._call_emergency_contact(decision, override), override)
            if isinstance(decision, Block):
                await self._block_escalation(decision.reason)
                return f"not carried out: {decision.reason}; the therapist has an urgent task"
            if self._facts.escalation is not None:
                return ("not needed: the emergency contact has already been told"
                        if override is not None else "already considered")
            return "outreach stopped first"

    async def _call_emergency_contact(self, decision: Escalate,
                                      override: ClinicianDecision | None) -> str:
        """Tell the emergency contact the minimum necessary, and record what came of it."""
        booking = self._booking
        contact = booking.client.emergency_contact
        assert contact is not None  # next_escalation blocks without one
        self._escalation_calls += 1
        step = "escalation" if self._escalation_calls == 1 else (
            f"escalation-{self._escalation_calls}"  # a later decision is a new call
        )
        request = EscalationRequest(
            idempotency_key=f"{workflow.info().workflow_id}/{step}",
            session_id=booking.session_id, client_ref=booking.client.ref,
            client_first_name=booking.client.first_name, contact=contact,
            risk_tier=booking.risk_tier, clinician_override=override is not None,
        )
        # A clinician's escalation stops only for a later decision; the protocol's also
        # when the client is reached.
        report = await self._steps.report(
            OutreachActivities.call_emergency_contact, request,
            stop=self._decided if override is not None else self._stops,
        )
        await self._record_call(report, decision.basis)
        came = escalation.emergency_call(report, self._facts.stop_reason())
        if isinstance(came, MaybeTold):
            return await self._escalation_uncertain(decision, came)
        if isinstance(came, NotTold):
            await self._block_escalation(came.reason)
            return f"not carried out: {came.reason}; the therapist has an urgent task"
        await self._record(escalation.sent(decision, contact, override, came))
        return "carried out: the emergency contact was told"

    async def _escalation_uncertain(self, decision: Escalate, came: MaybeTold) -> str:
        """The contact's message may have reached them: neither sent nor blocked."""
        key = None
        if came.task:  # a person must confirm (not when a clinician's decision stopped it)
            notice = self._clinicians.notice(
                f"escalation-uncertain-{self._escalation_calls}", NoticeKind.TASK,
                Priority.URGENT,
                f"The emergency contact may not have been reached ({came.reason}): confirm "
                "with them, or decide (escalate_now calls again)", numbered=False,
            )
            await self._clinicians.tell(notice)
            key = notice.key
        await self._record(events.EscalationUncertain(basis=decision.basis, reason=came.reason,
                                                      task=key))
        answer = f"uncertain: {came.reason}; it may have reached the emergency contact"
        return answer + ("; the therapist has an urgent task" if came.task else "")

    async def _block_escalation(self, reason: str) -> None:
        """Escalation cannot happen: an urgent task puts the decision with the therapist."""
        ask = ("Awaiting your decision (escalate now with a legal basis, mark safe or stand "
               "down)" if self._patches.has(AWAIT_CLINICIAN) else "Decide next steps now")
        notice = self._clinicians.notice(
            "escalation-blocked", NoticeKind.TASK, Priority.URGENT,
            f"Client unreachable; escalation blocked: {reason}. {ask}",
        )
        await self._clinicians.tell(notice)
        await self._record(events.EscalationBlocked(reason=reason, task=notice.key))
