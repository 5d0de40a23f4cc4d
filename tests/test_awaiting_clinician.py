"""When a session waits for a clinician before it closes: pure decisions (issue 26, item 1).

The workflow's side is in `tests/test_session_workflow.py` (awaiting a clinician).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from missed_session.domain import decisions, escalation, events, protocol
from missed_session.domain.facts import Escalation, SessionFacts
from missed_session.domain.models import (
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    ProtocolSettings,
    ResponseChannel,
    SessionStatus,
)
from tests.factories import booking

AT = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def facts(escalated: Escalation | None) -> SessionFacts:
    return SessionFacts(start=AT, escalation=escalated)


@pytest.mark.parametrize(("state", "why"), [
    (Escalation.BLOCKED, "escalation is blocked"),
    (Escalation.UNCERTAIN, "the emergency contact may not have been reached"),
])
def test_blocked_or_unclear_escalation_awaits_a_clinicians_decision(
    state: Escalation, why: str,
) -> None:
    awaited = escalation.awaited(facts(state))
    assert awaited is not None
    assert why in awaited
    for decision in ("escalate_now", "mark_safe", "stand_down"):
        assert decision in awaited
    assert not escalation.clinician_acted(facts(state))


@pytest.mark.parametrize("state", [None, Escalation.SENT])
def test_nothing_is_awaited_when_escalation_was_not_needed_or_reached_the_contact(
    state: Escalation | None,
) -> None:
    assert escalation.awaited(facts(state)) is None


@pytest.mark.parametrize("news", [
    CheckIn(), ClientResponse(channel=ResponseChannel.CALL), DecisionKind.MARK_SAFE,
    DecisionKind.STAND_DOWN,
])
def test_contact_or_an_ending_decision_ends_the_wait_and_awaits_nothing(
    news: CheckIn | ClientResponse | DecisionKind,
) -> None:
    noted = facts(Escalation.BLOCKED).noted(news)
    assert escalation.clinician_acted(noted)
    assert escalation.awaited(noted) is None


def test_the_emergency_contact_told_on_a_decision_ends_the_wait() -> None:
    told = facts(Escalation.BLOCKED).apply(events.EscalationSent(
        basis="clinician decision", legal_basis="vital interests", decided_by="t-ana",
        reason="unreachable for hours"), AT)
    assert escalation.clinician_acted(told)


def test_the_wait_is_the_protocols_hours_compressed_by_its_time_scale() -> None:
    assert ProtocolSettings().clinician_wait_hours == 24
    assert protocol.clinician_wait(booking()) == timedelta(hours=24)
    fast = booking(protocol={"clinician_wait_hours": 2, "time_scale": 60})
    assert protocol.clinician_wait(fast) == timedelta(minutes=2)


@pytest.mark.parametrize("kind", [DecisionKind.ESCALATE_NOW, DecisionKind.MARK_SAFE,
                                  DecisionKind.STAND_DOWN, DecisionKind.ADD_NOTE])
def test_every_decision_is_possible_while_a_clinician_is_awaited(kind: DecisionKind) -> None:
    decision = ClinicianDecision(clinician_id="t-ana", reason="r", legal_basis="vital interests")
    assert decisions.problem(kind, decision, status=SessionStatus.AWAITING_CLINICIAN,
                             escalated=False, decided=False) is None
