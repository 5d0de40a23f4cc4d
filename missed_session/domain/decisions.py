"""Clinician decisions: which are acceptable now, and why not otherwise.

The workflow's update validators call :func:`problem`; a non-None answer rejects the update
with that message to the caller, and the workflow goes on as if nothing had been asked.
"""

from __future__ import annotations

from missed_session.domain.models import ClinicianDecision, DecisionKind, SessionStatus

OUTREACH_STATUSES = frozenset({
    SessionStatus.NO_SHOW, SessionStatus.OUTREACH, SessionStatus.ESCALATION,
    SessionStatus.AWAITING_CLINICIAN, SessionStatus.HELD,
})
"""Where mark_safe, escalate_now and stand_down can still change what happens."""
OPEN_STATUSES = frozenset(set(SessionStatus) - {SessionStatus.CLOSED})
"""Where a note can still be added to the trail."""


def problem(
    kind: DecisionKind,
    decision: ClinicianDecision,
    *,
    status: SessionStatus,
    escalated: bool,
    decided: bool,
) -> str | None:
    """Why `decision` cannot be accepted in `status`, or None if it can.

    `escalated`: the emergency contact has already been reached (or is being reached).
    `decided`: a mark_safe or stand_down has already ended outreach.
    """
    missing = missing_field(kind, decision)
    if missing is not None:
        return missing
    if kind is DecisionKind.ADD_NOTE:
        return None if status in OPEN_STATUSES else "the session is closed"
    if status not in OUTREACH_STATUSES:
        return f"not during outreach (the session is {status.value})"
    if decided:
        return "a decision has already ended outreach"
    if kind is DecisionKind.ESCALATE_NOW and escalated:
        return "the emergency contact has already been contacted"
    return None

def missing_field(kind: DecisionKind, decision: ClinicianDecision) -> str | None:
    """What the decision lacks whatever the session's state (also checked by the CLI)."""
    if not decision.clinician_id.strip():
        return "clinician_id is required"
    if not decision.reason.strip():
        return "the note is empty" if kind is DecisionKind.ADD_NOTE else "a reason is required"
    if kind is DecisionKind.ESCALATE_NOW and not decision.legal_basis.strip():
        return "a legal basis is required to escalate"
    return None
