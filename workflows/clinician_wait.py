"""Before a session closes, a person has it: the wait for a clinician, and the ladder again.

Outreach is over and its outcome known. Two things still keep the session open, visibly
(`awaiting_clinician`), for at most the protocol's `clinician_wait_hours` in all:

- a decision nobody can take for the protocol: escalation blocked, or the emergency contact
  not clearly reached (`escalation.awaited`). A clinician's escalate_now (with a legal
  basis), mark_safe or stand_down, or the client getting in touch, ends it;
- nobody has the session (`escalation.unacknowledged`): a notice ran out of steps with
  nobody acknowledging, or the session is high risk and no clinician has acknowledged any of
  its notices. An acknowledgment (the notice tells the session, `notice_news`) or any
  decision, a note of what was done included, ends it; the outcome stays what it was.

Meanwhile, a notice that ran out with nobody acknowledging is followed, after its policy's
minutes, by a fresh urgent task that climbs the on-call ladder from its first rung
(`notice_renewed`), and so on until a person answers or the wait ends. Every step of it is
pure decisions in `missed_session.domain.escalation`; this is only the waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from missed_session.domain import escalation, events, protocol
    from missed_session.domain.escalation import Basis
    from missed_session.domain.facts import SessionFacts
    from missed_session.domain.models import (
        NoticeKind,
        Outcome,
        Priority,
        SessionBooking,
        SessionStatus,
    )
    from missed_session.domain.step_reports import StepReport

from workflows.clinicians import AWAIT_ACKNOWLEDGMENT, Clinicians
from workflows.letters import Letters
from workflows.patches import Patches
from workflows.steps import wait_until

AWAIT_CLINICIAN = "await-clinician"
"""Patch id: a session whose escalation is blocked or unclear waits for a clinician's
decision before it closes (sessions recorded before it close at once, and replay so)."""
RENEWED_TITLE = (
    "Nobody has acknowledged this session's notices: acknowledge this task, or decide "
    "(escalate now with a legal basis, mark safe, stand down, or add what was done)"
)


class ClinicianWait:
    """The session workflow's wait for a person, between outreach and follow-up."""

    _booking: SessionBooking
    _facts: SessionFacts
    _clinicians: Clinicians
    _escalating: asyncio.Lock
    _letters: Letters
    _patches: Patches

    # What the protocol provides (`SessionWorkflow`):

    async def _record(self, details: events.EventDetails) -> None:
        raise NotImplementedError

    def _plan(self, status: SessionStatus, action: str | None, at: datetime | None) -> None:
        raise NotImplementedError

    def _stops(self) -> bool:
        raise NotImplementedError

    async def _acknowledge_contact(self) -> Outcome:
        raise NotImplementedError

    async def _wait_during_outreach(self, until: datetime) -> bool:
        raise NotImplementedError

    # -- the wait ------------------------------------------------------------------------

    async def _until_a_person_has_it(self, outcome: Outcome) -> Outcome:
        """Outreach ended with `outcome`: the session's outcome once a person has it.

        First a decision, if one is awaited (it may change the outcome); then, if nobody
        has acknowledged or decided anything, an acknowledgment (it does not). One deadline
        for both, from the first wait.
        """
        until: datetime | None = None
        awaited = escalation.awaited(self._facts)
        if awaited is not None and self._patches.has(AWAIT_CLINICIAN):
            until = workflow.now() + protocol.clinician_wait(self._booking)
            outcome = await self._await_clinician(awaited, until)
        outcome = await self._letters.after_outreach(  # the protocol's letters, if any
            outcome, record=self._record, stops=self._stops, plan=self._plan,
            wait=self._wait_during_outreach, contact=self._acknowledge_contact,
            told=self._clinician_acted)
        self._facts = self._facts.outreach_ended(outcome)
        reason = escalation.unacknowledged(self._facts, self._booking,
                                           delivering=self._clinicians.delivering > 0)
        if reason is None or (until is not None and workflow.now() >= until):
            return outcome
        if not self._patches.has(AWAIT_ACKNOWLEDGMENT):
            return outcome
        return await self._await_acknowledgment(reason, outcome, until)

    async def _await_clinician(self, awaited: str, until: datetime) -> Outcome:
        """Escalation blocked or unclear: a clinician decides how the session ends.

        Waits for a clinician's escalate_now (carried out by its handler: the emergency
        contact is told, on the decision's legal basis), mark_safe or stand_down, or for the
        client to get back in touch; at `until`, the session closes as it would have without
        the wait, recorded as timed out.
        """
        self._plan(SessionStatus.AWAITING_CLINICIAN, awaited, until)
        await self._record(events.AwaitingClinician(awaiting=awaited, until=until))
        await self._wait_climbing(self._clinician_acted, until)
        async with self._escalating:  # a clinician's escalation in flight ends first
            pass
        if self._stops():
            return await self._acknowledge_contact()
        if escalation.clinician_acted(self._facts):  # the emergency contact was told
            return Outcome.UNREACHABLE_ESCALATED
        outcome = protocol.unreachable_outcome(escalated=self._facts.escalated())
        await self._timed_out(outcome)
        return outcome

    async def _await_acknowledgment(self, reason: str, outcome: Outcome,
                                    until: datetime | None) -> Outcome:
        """Nobody has the session: wait for an acknowledgment or a decision; keep `outcome`."""
        if until is None:
            until = workflow.now() + protocol.clinician_wait(self._booking)
        self._plan(SessionStatus.AWAITING_CLINICIAN, reason, until)
        await self._record(events.AwaitingClinician(awaiting=reason, until=until))
        if not await self._wait_climbing(self._clinician_heard, until):
            await self._timed_out(outcome)
        async with self._escalating:  # a clinician's escalation in flight ends first
            pass
        return outcome

    async def _wait_climbing(self, done: Callable[[], bool], until: datetime) -> bool:
        """Wait for `done` until `until`; True if it came.

        Meanwhile, when a notice ran out with nobody acknowledging, a fresh one climbs the
        ladder after its policy's minutes (`escalation.climb_again_at`). Without a run-out
        this is one timer, as it was before notices told their session anything.
        """
        while True:
            again = escalation.climb_again_at(self._facts, self._booking)
            deadline = until if again is None else min(again, until)

            def woken(again: datetime | None = again) -> bool:
                return done() or escalation.climb_again_at(self._facts, self._booking) != again

            if await wait_until(woken, deadline):
                if done():
                    return True
                continue
            if workflow.now() >= until:
                return done()
            await self._climb_again()

    async def _climb_again(self) -> None:
        """Nobody acknowledged: a fresh urgent task climbs the on-call ladder again."""
        notice = self._clinicians.notice("nobody-acknowledged", NoticeKind.TASK,
                                         Priority.URGENT, RENEWED_TITLE, numbered=True)
        await self._record(events.NoticeRenewed(notice=notice.key,
                                                round=self._facts.renewals + 1))
        await self._clinicians.tell(notice)

    async def _timed_out(self, outcome: Outcome) -> None:
        await self._record(events.ClinicianWaitTimedOut(
            waited_hours=self._booking.protocol.clinician_wait_hours, outcome=outcome))

    async def _record_call(self, report: StepReport, basis: Basis) -> None:
        """What the emergency contact's phone said, in the trail: the session page shows it."""
        called = escalation.called(report, basis, self._facts.stop_reason())
        if called is not None and self._patches.has(AWAIT_ACKNOWLEDGMENT):
            await self._record(called)

    def _clinician_acted(self) -> bool:
        return escalation.clinician_acted(self._facts)

    def _clinician_heard(self) -> bool:
        return self._facts.clinician_heard()
