"""The session's side of notices that track their reason (issue 25, item 4).

The session's notices follow what is actually happening: the no-show alert says whether
outreach has started or waits for the client's contact window (and whether the emergency
contact is being called now); the therapist gets a notice whenever the emergency contact is
called, with what came of it; and when the session's reason for its notices ends (the
client checked in late or was reached, a clinician marked the client safe or stood outreach
down), every notice of the session that reason ends is signalled `reason_ended`, and
resolves itself (`workflows.notice`). Which notice ends on which reason is decided in
`missed_session.domain.notices`; this module only carries it out.

The notices are known from the session's own trail (each event naming a notice), folded as
the trail lands, so a replay knows the same ones. A signal is a command in the session's
history: it reaches the notice across worker restarts; one to a notice that is already
closed (acknowledged, or never started without a roster) fails and is passed over.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from missed_session.contracts.notices import notice_workflow_id
    from missed_session.domain import escalation, events, facts, notices
    from missed_session.domain.escalation import Escalate
    from missed_session.domain.facts import SessionFacts
    from missed_session.domain.models import (
        ClinicianDecision,
        NoticeKind,
        Outcome,
        Priority,
        SessionBooking,
    )
    from missed_session.domain.notices import ReasonEnded

from workflows.clinicians import NOTICES_TRACK_REASON, Clinicians
from workflows.patches import Patches

STARTED = "No-show: outreach to the client has started"
"""The alert's words before the patch (and still, when outreach starts at once)."""


class NoticeReasons:
    """Which notices the session gave, and what to tell them as the session moves on."""

    def __init__(self, booking: SessionBooking, clinicians: Clinicians,
                 patches: Patches) -> None:
        self._booking = booking
        self._clinicians = clinicians
        self._patches = patches
        self._keys: list[str] = []
        """The session's notices, as its trail names them, in order."""
        self._calls: list[events.EventDetails] = []
        """Escalation events of a call the therapist has not yet been given a notice of."""

    def noted(self, details: events.EventDetails) -> None:
        """An event landed in the session's trail: note a notice it names, or a call."""
        key = notices.named_notice(details)
        if key is not None and key not in self._keys:
            self._keys.append(key)
        if notices.emergency_call_outcome(details) is None:
            return
        if self._calls and isinstance(self._calls[-1], events.EmergencyContactCalled):
            return  # what escalation made of a call whose answer is noted already
        self._calls.append(details)

    def no_show_title(self, known: SessionFacts) -> str:
        """The no-show alert's words, as outreach is about to begin (`known`: the facts)."""
        if not self._patches.has(NOTICES_TRACK_REASON):
            return STARTED
        booking, now = self._booking, workflow.now()
        opens = facts.window_opens(booking, now)
        calling = opens > now and isinstance(
            escalation.next_escalation(known, booking, now, 0, None, deferred=True), Escalate)
        return notices.no_show_title(now=now, opens=opens, time_zone=booking.client.time_zone,
                                     emergency_call=calling)

    async def told_of_call(self, answer: str, override: ClinicianDecision | None) -> str:
        """After the emergency contact's call: the therapist's notice of it; `answer` as is.

        `override`: the clinician's decision the call was made on, if any.
        """
        calls, self._calls = self._calls, []
        decided_by = override.clinician_id if override is not None else None
        if not (self._patches.has(NOTICES_TRACK_REASON) and notices.tells_therapist_of_call(
                self._booking.therapist_id, decided_by)):
            return answer
        for details in calls:
            outcome = notices.emergency_call_outcome(details)
            assert outcome is not None  # only calls are noted
            notice = self._clinicians.notice(
                "emergency-contact-called", NoticeKind.ALERT, Priority.URGENT,
                notices.emergency_call_title(outcome))
            # The inbox row, and with a roster the notice's own trail, document it; the
            # session's trail already has the call (`escalation_*`), so nothing is added there.
            await self._clinicians.tell(notice)
        return answer

    async def ended(self, outcome: Outcome) -> None:
        """Outreach ended with `outcome`: signal the notices its reason ends, if one ended."""
        reason = notices.end_reason(outcome)
        if reason is None or not self._patches.has(NOTICES_TRACK_REASON):
            return
        for key in self._keys:
            if not notices.ends(key, reason):
                continue
            handle = workflow.get_external_workflow_handle(notice_workflow_id(key))
            try:
                await handle.signal("reason_ended", ReasonEnded(reason=reason))
            except FailureError:  # closed already, or never started (no roster)
                continue
