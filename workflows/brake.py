"""The mass no-show brake's step in a session: between the no-show and the first outreach.

`BrakeHold` is mixed into the session workflow. At the no-show the session asks the brake
(one local activity: an ordinary no-show costs one indexed count) whether it is held. If
it is, the hold is recorded (`brake_held`), the session that opened the episode pages the
on-call clinician and the clinical supervisor (one notice per episode, its key named after
the episode), and the session waits, durably, for a supervisor's `brake_decision` signal
(release: outreach proceeds; stand_down: no client outreach), for the client or a
clinician to end outreach anyway, or for the hold's limit: short for a high-risk session,
so that the brake never silences a real crisis. Whatever ends the hold is recorded.

The therapist's no-show alert is not held: it runs alongside, as for every no-show. A
check that cannot be made (PostgreSQL down) holds nothing: the brake fails open.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.brake import BrakeActivities
    from activities.therapist import TherapistActivities
    from missed_session.contracts.brake import BrakeCheck, BrakeVerdict
    from missed_session.domain import brake, events
    from missed_session.domain.brake import BrakeDecision, BrakeState
    from missed_session.domain.facts import SessionFacts
    from missed_session.domain.models import (
        NoticeKind,
        Priority,
        RiskTier,
        SessionBooking,
        SessionStatus,
    )

from workflows.clinicians import Clinicians
from workflows.patches import Patches
from workflows.steps import wait_until
from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT

NO_SHOW_BRAKE = "no-show-brake"
"""Patch id: sessions recorded before the brake go from the no-show straight to outreach."""
HELD_ALERT = ("No-show: client outreach is on hold (many sessions were missed at once; a "
              "supervisor decides)")
"""The therapist's no-show alert for a held session: it still goes, and says why no call."""
CHECK_TIMEOUT = timedelta(seconds=5)
CHECK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)
"""A few quick tries: the first outreach waits for the answer, and no answer holds nothing."""


class BrakeHold:
    """The session's hold, and the supervisor's signal that ends it."""

    _booking: SessionBooking
    _facts: SessionFacts
    _clinicians: Clinicians
    _patches: Patches

    # What the protocol provides (`SessionWorkflow`):

    async def _record(self, details: events.EventDetails) -> None:
        raise NotImplementedError

    def _plan(self, status: SessionStatus, action: str | None, at: datetime | None, *,
              also: Any = ()) -> None:
        raise NotImplementedError

    @workflow.signal
    def brake_decision(self, decision: BrakeDecision) -> None:
        """A supervisor released the hold or stood the session down (ignored unless held)."""
        self._facts = self._facts.brake_noted(decision)

    def _brake_asked(self) -> bool:
        """Whether this session asks the brake: only where the practice runs one.

        The patch is taken only then, so a session of a practice without a brake records
        neither the patch nor the question: its history is the one it had before the brake.
        """
        return self._booking.protocol.no_show_brake and self._patches.has(NO_SHOW_BRAKE)

    async def _brake_check(self) -> BrakeVerdict | None:
        """Ask the brake whether it holds this session: the verdict if it does, else None."""
        booking = self._booking
        try:
            verdict: BrakeVerdict = await workflow.execute_local_activity_method(
                BrakeActivities.brake_check,
                BrakeCheck(session_id=booking.session_id, risk_tier=booking.risk_tier,
                           modality=booking.modality,
                           start=self._facts.start, at=workflow.now(),
                           time_scale=booking.protocol.time_scale),
                start_to_close_timeout=CHECK_TIMEOUT, retry_policy=CHECK_RETRY,
            )
        except ActivityError:
            return None  # fails open: a check that cannot be made never holds outreach
        return verdict if verdict.episode is not None else None

    async def _brake_hold(self, verdict: BrakeVerdict | None) -> None:
        """Hold client outreach until a supervisor decides, outreach stops, or the limit.

        None (not held): nothing to wait for.
        """
        if verdict is None:
            return
        booking = self._booking
        until = workflow.now() + booking.protocol.scaled(verdict.release_after_minutes)
        self._plan(SessionStatus.HELD, "client outreach held by the mass no-show brake", until)
        await self._record(events.BrakeHeld(
            episode=verdict.episode, no_shows=verdict.no_shows, due=verdict.due,
            window_minutes=verdict.window_minutes,
            release_after_minutes=verdict.release_after_minutes, paged=verdict.paged,
        ))
        paging = asyncio.create_task(self._page(verdict)) if verdict.paged else None
        await wait_until(self._hold_ends, until)
        await self._end_hold(verdict)
        if paging is not None:
            await paging

    def _hold_ends(self) -> bool:
        return self._facts.brake_decision is not None or self._facts.outreach_stops()

    async def _end_hold(self, verdict: BrakeVerdict) -> None:
        """Record what ended the hold: a supervisor, the client or a clinician, or the limit."""
        episode = verdict.episode
        assert episode is not None
        decision = self._facts.brake_decision
        if decision is not None and decision.kind == "stand_down":
            await self._record(events.BrakeStoodDown(
                episode=episode, by=decision.clinician_id,
                reason=decision.reason or "stood down by a supervisor: no client outreach"))
        elif decision is not None:
            await self._record(events.BrakeReleased(
                episode=episode, by=decision.clinician_id,
                reason=decision.reason or "released by a supervisor: outreach proceeds"))
        elif self._facts.outreach_stops():
            await self._record(events.BrakeReleased(
                episode=episode, by="brake",
                reason=f"outreach had stopped: {self._facts.stop_reason()}"))
        else:
            high = " (high risk)" if self._booking.risk_tier is RiskTier.HIGH else ""
            await self._record(events.BrakeReleased(
                episode=episode, by="brake",
                reason=f"nobody decided within {verdict.release_after_minutes} minutes"
                       f"{high}: outreach proceeds"))
        assert self._facts.brake is not BrakeState.HELD

    async def _page(self, verdict: BrakeVerdict) -> None:
        """Page the on-call clinician and the supervisor: once per episode (its opener).

        An urgent task with the count and the likely cause, in the inbox and, with a roster
        on file, climbing the on-call ladder without its therapist rungs.
        """
        assert verdict.episode is not None
        notice = self._clinicians.notice(
            f"brake-episode-{verdict.episode}", NoticeKind.TASK, Priority.URGENT,
            brake.page_title(verdict.no_shows, verdict.window_minutes, verdict.episode,
                             verdict.modality),
            numbered=False,
        )
        await workflow.execute_activity_method(
            TherapistActivities.notify_therapist, notice,
            start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
        )
        # Not `tell`: the page is not the session's notice (it is not awaited before the
        # session closes), and it was never behind the notice-workflows patch.
        await self._clinicians.start_climb(notice, ladder=brake.supervisor_ladder)
