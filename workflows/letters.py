"""The letter step: after the calls, the letters the protocol names, each a task to post.

When outreach ends without reaching the client (and any wait for a clinician's decision is
over) and the protocol lists letters (the insurer's
ladder: a first-class letter, then a certified one), each letter in turn is prepared as a
PDF (`LetterActivities.prepare_letter`), the practice is given a task to post it and confirm
it was posted (resolving the task is the confirmation), and the trail records it
(`letter_prepared`: where the file is and its digest, never its words or the address).
Letters are spaced by the protocol's `letter_spacing_days`; the client getting in touch, a
late check-in or a clinician ending outreach stops the letters not yet prepared, and the
session closes as that news says. Sessions recorded before letters replay without them
(`workflow.patched("letter-step")`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.letters import LetterActivities
    from missed_session.domain import contact_window, events, letters
    from missed_session.domain.letters import LetterRequest
    from missed_session.domain.models import (
        NoticeKind,
        Outcome,
        Priority,
        SessionBooking,
        SessionStatus,
    )

from workflows.clinicians import Clinicians
from workflows.patches import Patches
from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT

LETTER_STEP = "letter-step"
"""Patch id: letters after the calls (sessions recorded before them replay without)."""

MINUTES_PER_DAY = 24 * 60


class Letters:
    """The session's letters, prepared one after another once the calls have failed."""

    def __init__(self, booking: SessionBooking, clinicians: Clinicians,
                 patches: Patches) -> None:
        self._booking = booking
        self._clinicians = clinicians
        self._patches = patches

    async def after_outreach(
        self, outcome: Outcome, *,
        record: Callable[[events.EventDetails], Awaitable[None]],
        stops: Callable[[], bool],
        wait: Callable[[datetime], Awaitable[bool]],
        plan: Callable[[SessionStatus, str | None, datetime | None], None],
        contact: Callable[[], Awaitable[Outcome]],
        told: Callable[[], bool],
    ) -> Outcome:
        """Prepare the letters due after `outcome`; the outcome the session closes with.

        `record` appends to the trail, `stops` says outreach must stop (contact, a
        decision), `wait` waits until an instant unless outreach stops (False then),
        `plan` shows what is next, `contact` records the news that stopped outreach and
        says the outcome it makes, `told` whether (outreach going on) the emergency contact has
        been told (a clinician's escalate_now may land while letters wait).
        """
        due = letters.letters_due(self._booking.protocol.letters, outcome)
        if not due or stops() or not self._patches.has(LETTER_STEP):
            return outcome
        for number, kind in enumerate(due, start=1):
            if number > 1:
                next_at = workflow.now() + self._booking.protocol.scaled(
                    self._booking.protocol.letter_spacing_days * MINUTES_PER_DAY)
                plan(SessionStatus.OUTREACH, f"letter {number} ({kind.value})", next_at)
                if not await wait(next_at):
                    break
            plan(SessionStatus.OUTREACH, f"letter {number} ({kind.value})", workflow.now())
            await self._prepare(number, kind, record)
            if stops():
                break
        if stops():
            return await contact()
        if outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED and told():
            return Outcome.UNREACHABLE_ESCALATED
        return outcome

    async def _prepare(self, number: int, kind: letters.LetterKind,
                       record: Callable[[events.EventDetails], Awaitable[None]]) -> None:
        """One letter: the PDF, the practice's task to post it, the trail's row."""
        booking = self._booking
        report = await workflow.execute_activity_method(
            LetterActivities.prepare_letter,
            LetterRequest(session_id=booking.session_id, client_ref=booking.client.ref,
                          first_name=booking.client.first_name, number=number, kind=kind,
                          dated=contact_window.local_date(workflow.now(),
                                                          booking.client.time_zone)),
            start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
        )
        notice = self._clinicians.notice(f"letter-{number}", NoticeKind.TASK,
                                         Priority.ROUTINE, letters.posting_task(kind, report),
                                         numbered=False)
        await self._clinicians.tell(notice)
        await record(events.LetterPrepared(number=number, kind=kind, file=report.file,
                                           digest=report.digest, addressed=report.addressed,
                                           task=notice.key))
