"""The outreach steps' payloads: a step's request and what it reports.

Defined in the domain for now (`domain.models`, `domain.clients`, `domain.person`), where
modules being changed elsewhere still import them from; re-exported here so that this
package lists everything that crosses the boundary. New code imports them from here.
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
