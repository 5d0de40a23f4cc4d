"""The outreach steps' payloads: a step's request and what it reports.

Still defined in the domain (`domain.models`, `domain.clients`, `domain.person`): the session
workflow and the outreach activities import them from there, and were being changed
elsewhere when this package was made. Re-exported here so that the package lists everything
that crosses the boundary; new code imports them from here, and the definitions move here
once those two modules import them from here too.
"""

from __future__ import annotations

from missed_session.domain.clients import StepOutcome
from missed_session.domain.models import EscalationRequest, OutreachRequest, TextCheck
from missed_session.domain.person import LadderLookup, RunningLadder

__all__ = [
    "EscalationRequest",
    "LadderLookup",
    "OutreachRequest",
    "RunningLadder",
    "StepOutcome",
    "TextCheck",
]
