"""When a session waits for a clinician before it closes: pure decisions (issue 26, item 1).

The workflow's side is in `tests/test_session_workflow.py` (awaiting a clinician).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from missed_session.domain import decisions, escalation, events, protocol
from missed_session.domain.facts import Escalation, NoticeNews, SessionFacts
from missed_session.domain.models import (
    CallResult,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    ProtocolSettings,
    ResponseChannel,
    SessionStatus,
)
from missed_session.domain.step_reports import (
    Done,
    Failed,
    Refused,
    StepReport,
    Stopped,
    Uncertain,
)
from tests.support.factories import booking

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


# -- nobody acknowledged: the outcome is final only once a person has the session ----------

ACKED = events.ClinicianAcknowledged(notice="s-1/no-show-alert", clinician_id="t-ana")
RAN_OUT = events.NoticeRanOut(notice="s-1/no-show-alert", again_after_minutes=5)
NOTE = events.ClinicianDecisionMade(decision=DecisionKind.ADD_NOTE, clinician_id="oc-lee",
                                    reason="called the GP")
RENEWED = events.NoticeRenewed(notice="s-1/nobody-acknowledged-1", round=1)
RENEWED_RAN_OUT = events.NoticeRanOut(notice="s-1/nobody-acknowledged-1",
                                      again_after_minutes=5)
LOOP_EVENTS = [ACKED, RAN_OUT, NOTE, RENEWED, RENEWED_RAN_OUT]


def folded(*recorded: events.EventDetails) -> SessionFacts:
    known = SessionFacts(start=AT)
    for n, details in enumerate(recorded):
        known = known.apply(details, AT + timedelta(minutes=n))
    return known


@pytest.mark.parametrize("risk", ["standard", "elevated", "high"])
def test_a_notice_that_ran_out_keeps_any_session_open_for_an_acknowledgment(risk: str) -> None:
    why = escalation.unacknowledged(folded(RAN_OUT), booking(risk_tier=risk), delivering=True)
    assert why is not None
    assert why.startswith("nobody acknowledged: the session's notices ran out")


def test_high_risk_awaits_an_acknowledgment_only_where_notices_can_be_acknowledged() -> None:
    high = booking(risk_tier="high")
    assert escalation.unacknowledged(folded(), high, delivering=True) is not None
    assert escalation.unacknowledged(folded(), high, delivering=False) is None  # inbox only
    assert escalation.unacknowledged(folded(), booking(), delivering=True) is None


@pytest.mark.parametrize("contact", [
    events.ClientResponded(channel=ResponseChannel.CALL, responder="client", attempt=1),
    events.CheckedIn(late=True),
])
def test_a_client_in_touch_ends_the_wait_for_an_acknowledgment(
        contact: events.EventDetails) -> None:
    """The client back ends the notices' reason: they resolve and those told hear so."""
    high = booking(risk_tier="high")
    assert escalation.unacknowledged(folded(RAN_OUT), high, delivering=True) is not None
    assert escalation.unacknowledged(folded(RAN_OUT, contact), high, delivering=True) is None
    assert escalation.unacknowledged(folded(contact), high, delivering=True) is None


def test_the_policys_minutes_after_a_run_out_a_fresh_round_climbs_then_waits_for_its_end(
) -> None:
    fast = booking(protocol={"time_scale": 60})
    assert escalation.climb_again_at(folded(RAN_OUT), booking()) == AT + timedelta(minutes=5)
    assert escalation.climb_again_at(folded(RAN_OUT), fast) == AT + timedelta(seconds=5)
    assert escalation.climb_again_at(folded(RAN_OUT, RENEWED), booking()) is None
    # The old alert running out again says nothing while the fresh round climbs...
    assert escalation.climb_again_at(folded(RAN_OUT, RENEWED, RAN_OUT), booking()) is None
    # ...the fresh round running out calls for the next, from its own run-out.
    again = folded(RAN_OUT, RENEWED, RENEWED_RAN_OUT)
    assert escalation.climb_again_at(again, booking()) == AT + timedelta(minutes=2 + 5)


@given(st.lists(st.sampled_from(LOOP_EVENTS), max_size=8), st.sampled_from(
    ["standard", "high"]))
def test_once_a_person_has_the_session_nothing_is_awaited_and_nothing_climbs(
    recorded: list[events.EventDetails], risk: str,
) -> None:
    known = folded(*recorded)
    heard = ACKED in recorded or NOTE in recorded
    session = booking(risk_tier=risk)
    assert known.clinician_heard() is heard
    if heard:
        assert escalation.unacknowledged(known, session, delivering=True) is None
        assert escalation.climb_again_at(known, session) is None
    else:
        ran_out = RAN_OUT in recorded or RENEWED_RAN_OUT in recorded
        awaited = escalation.unacknowledged(known, session, delivering=True)
        assert (awaited is not None) is (ran_out or risk == "high")
        due = escalation.climb_again_at(known, session)
        if due is not None:  # only after a run-out, never before it
            assert ran_out
            assert due >= AT + timedelta(minutes=5)


def test_the_news_a_notice_sends_is_recorded_as_the_sessions_own_event() -> None:
    assert NoticeNews(notice="s-1/a", state="acknowledged", clinician_id="t-ana").event() == (
        events.ClinicianAcknowledged(notice="s-1/a", clinician_id="t-ana"))
    assert NoticeNews(notice="s-1/a", state="exhausted", again_after_minutes=10).event() == (
        events.NoticeRanOut(notice="s-1/a", again_after_minutes=10))


# -- whether the emergency contact answered ------------------------------------------------


@pytest.mark.parametrize(("report", "result", "reason"), [
    (Done(result=CallResult.ANSWERED), "answered", ""),
    (Done(result=CallResult.NO_ANSWER), "no_answer", ""),
    (Done(result=CallResult.ANSWERED_UNKNOWN), "answered_unknown", ""),
    (Failed(reason="invalid contact"), "failed", "invalid contact"),
    (Uncertain(reason="delivery uncertain"), "uncertain", "delivery uncertain"),
    (Stopped(), "stopped", "mark_safe"),
])
def test_what_the_emergency_contacts_phone_said_is_recorded(
    report: StepReport, result: str, reason: str,
) -> None:
    assert escalation.called(report, "consent on file", "mark_safe") == (
        events.EmergencyContactCalled(result=result, reason=reason,
                                      basis="consent on file"))
    assert escalation.called(Refused(reason="consent withdrawn"), "consent on file", "") is None


@pytest.mark.parametrize(("came", "named"), [
    ("no_answer", "not reached: no answer"), ("failed", "not reached: the call failed"),
])
def test_a_contact_not_reached_is_named_in_what_the_session_awaits(came: str,
                                                                   named: str) -> None:
    known = folded(events.EmergencyContactCalled(result=came,
                                                 basis="consent on file"),
                   events.EscalationBlocked(reason="emergency contact unreachable"))
    awaited = escalation.awaited(known)
    assert awaited is not None
    assert named in awaited
