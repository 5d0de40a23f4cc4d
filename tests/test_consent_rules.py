"""Consent per channel, escalation scopes, clinician decisions and texts: the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from missed_session.domain import decisions, protocol
from missed_session.domain.clients import (
    ConsentDefaults,
    ConsentRecord,
    ConsentSource,
    ConsentSubject,
)
from missed_session.domain.clients import decide as consent_decision
from missed_session.domain.messages import (
    REVEALING_WORDS,
    TEXT_LIMIT,
    MessageTooLongError,
    email,
    is_opt_out,
    text,
)
from missed_session.domain.models import (
    Channel,
    ClinicianDecision,
    ContactPreferences,
    DecisionKind,
    SessionStatus,
)
from tests.support.factories import booking, booking_data

CALLBACK = "+15555550100"


def with_client(**client: Any) -> Any:
    data = booking_data()
    return booking(client={**data["client"], **client})


def test_existing_bookings_keep_call_and_voicemail_consent_only() -> None:
    preferences = booking().client.preferences
    assert [c for c in Channel if preferences.allows(c)] == [Channel.CALL, Channel.VOICEMAIL]
    contact = booking().client.emergency_contact
    assert contact is not None
    assert contact.consent_scope.value == "unreachable"


def test_a_preferred_channel_needs_consent() -> None:
    with pytest.raises(ValidationError, match="preferred channel 'text' has no consent"):
        ContactPreferences(preferred=Channel.TEXT)


def test_the_preferred_channel_leads_the_protocols_order() -> None:
    session = with_client(preferences={"text": True, "preferred": "text"})
    session = session.model_copy(update={"protocol": session.protocol.model_copy(
        update={"channels": (Channel.CALL, Channel.VOICEMAIL, Channel.TEXT)})})
    assert protocol.outreach_channels(session) == (Channel.TEXT, Channel.CALL, Channel.VOICEMAIL)


def test_skip_reasons() -> None:
    session = with_client(email=None, preferences={"email": True})
    assert protocol.skip_reason(session, Channel.CALL) is None
    assert protocol.skip_reason(session, Channel.TEXT) == "no consent for text"
    assert protocol.skip_reason(session, Channel.EMAIL) == "no email address on file"


@pytest.mark.parametrize(("risk", "scope", "blocker"), [
    ("standard", "unreachable", None),
    ("standard", "safety_concern", "consent covers safety concerns only"),
    ("elevated", "safety_concern", None),
    ("high", "safety_concern", None),
])
def test_escalation_consent_scope(risk: str, scope: str, blocker: str | None) -> None:
    contact = {"name": "Sam", "phone": "+14155550999", "consent": True,
               "consent_date": "2026-01-15", "consent_scope": scope}
    data = booking_data()
    session = booking(risk_tier=risk, client={**data["client"], "emergency_contact": contact})
    assert protocol.escalation_blocker(session) == blocker


def test_a_protocol_lists_each_channel_once() -> None:
    with pytest.raises(ValidationError, match="must not repeat"):
        booking(protocol={"channels": ["call", "call"]})


def decide(**fields: str) -> ClinicianDecision:
    return ClinicianDecision(**{"clinician_id": "t-ana", "reason": "why", **fields})


@pytest.mark.parametrize(("kind", "decision", "status", "problem"), [
    (DecisionKind.MARK_SAFE, decide(), SessionStatus.OUTREACH, None),
    (DecisionKind.MARK_SAFE, decide(), SessionStatus.WAITING,
     "not during outreach (the session is waiting)"),
    (DecisionKind.MARK_SAFE, decide(reason=""), SessionStatus.OUTREACH, "a reason is required"),
    (DecisionKind.STAND_DOWN, decide(clinician_id=""), SessionStatus.OUTREACH,
     "clinician_id is required"),
    (DecisionKind.ESCALATE_NOW, decide(), SessionStatus.OUTREACH,
     "a legal basis is required to escalate"),
    (DecisionKind.ESCALATE_NOW, decide(legal_basis="vital interests"), SessionStatus.NO_SHOW,
     None),
    (DecisionKind.ADD_NOTE, decide(), SessionStatus.SCHEDULED, None),
    (DecisionKind.ADD_NOTE, decide(), SessionStatus.CLOSED, "the session is closed"),
    (DecisionKind.ADD_NOTE, decide(reason=" "), SessionStatus.OUTREACH, "the note is empty"),
])
def test_decision_rules(kind: DecisionKind, decision: ClinicianDecision, status: SessionStatus,
                        problem: str | None) -> None:
    assert decisions.problem(kind, decision, status=status, escalated=False,
                             decided=False) == problem


def test_one_escalation_and_one_ending_decision() -> None:
    escalate = decide(legal_basis="vital interests")
    assert decisions.problem(DecisionKind.ESCALATE_NOW, escalate, status=SessionStatus.OUTREACH,
                             escalated=True, decided=False) == (
        "the emergency contact has already been contacted"
    )
    assert decisions.problem(DecisionKind.STAND_DOWN, decide(), status=SessionStatus.OUTREACH,
                             escalated=False, decided=True) == (
        "a decision has already ended outreach"
    )


@pytest.mark.parametrize("first_name", ["Robin", "Maximiliana-Josephine"])
def test_texts_fit_one_segment_and_reveal_nothing(first_name: str) -> None:
    body = text(first_name, "Alex at the front desk", CALLBACK)
    assert len(body) <= TEXT_LIMIT
    assert CALLBACK in body
    assert "STOP" in body
    assert not [word for word in REVEALING_WORDS if word in body.lower()]


def test_a_text_that_cannot_fit_is_refused() -> None:
    with pytest.raises(MessageTooLongError):
        text("Robin", "A" * 120, CALLBACK)


def test_email_is_as_discreet_as_the_voicemail() -> None:
    subject, body = email("Robin", "Alex at the front desk", CALLBACK)
    assert "Robin" in body
    assert CALLBACK in body
    assert not [w for w in REVEALING_WORDS if w in (subject + body).lower()]


@pytest.mark.parametrize(("reply", "opt_out"), [
    ("STOP", True), (" stop ", True), ("Stop.", True), ("unsubscribe", True), ("QUIT", True),
    ("ok", False), ("please don't stop calling", False), ("", False),
])
def test_stop_keywords(reply: str, opt_out: bool) -> None:
    assert is_opt_out(reply) is opt_out


def _record(seq: int, source: str, granted: bool, *, client_ref: str | None = "c-1",
            minute: int = 0) -> ConsentRecord:
    return ConsentRecord(
        record_id=f"consent-{seq}", client_ref=client_ref, subject=ConsentSubject.TEXT,
        contact_point="+14155550123", granted=granted,
        effective_at=datetime(2026, 12, 1, 9, minute, tzinfo=UTC),
        source=ConsentSource(source), recorded_by="t",
        recorded_at=datetime(2026, 12, 1, 9, minute, tzinfo=UTC))


@given(st.lists(st.sampled_from(["booking", "client_request", "stop_reply", "start_reply"]),
                min_size=1, max_size=8))
def test_a_bookings_grant_never_lifts_a_withdrawal(sources: list[str]) -> None:
    history = []
    for seq, source in enumerate(sources):
        granted = source != "stop_reply"
        number_wide = source in {"stop_reply", "start_reply"}
        history.append(_record(seq, source, granted, minute=seq,
                               client_ref=None if number_wide else "c-1"))
    answer = consent_decision(history, client_ref="c-1", subject=ConsentSubject.TEXT,
                    contact_point="+14155550123", at=datetime(2026, 12, 2, tzinfo=UTC),
                    defaults=ConsentDefaults())
    last_withdrawal = max((i for i, s in enumerate(sources) if s == "stop_reply"), default=-1)
    proven_after = any(s in {"client_request", "start_reply"}
                       for s in sources[last_withdrawal + 1:])
    if last_withdrawal >= 0:
        assert answer.allowed is proven_after
    else:
        assert answer.allowed
