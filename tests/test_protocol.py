"""The protocol's decisions, from the booking alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from missed_session.domain import escalation, events, protocol
from missed_session.domain.clients import (
    ClientRecord,
    ConsentDecision,
    ConsentDefaults,
    DirectoryContact,
    PhonePoint,
)
from missed_session.domain.facts import SessionFacts
from missed_session.domain.models import (
    Channel,
    CheckIn,
    EmergencyContact,
    Outcome,
    ProtocolSettings,
    Reschedule,
    RiskTier,
)
from tests.support.factories import booking, booking_data, without_consent

SETTINGS = {"grace_period_minutes": 20, "high_risk_grace_period_minutes": 8, "max_attempts": 4}


@pytest.mark.parametrize(
    ("risk_tier", "minutes"),
    [(RiskTier.STANDARD, 20), (RiskTier.ELEVATED, 20), (RiskTier.HIGH, 8)],
)
def test_grace_period_per_risk_tier(risk_tier: RiskTier, minutes: int) -> None:
    b = booking(risk_tier=risk_tier, protocol=SETTINGS)
    assert protocol.grace_period_minutes(b) == minutes
    assert protocol.grace_period(b) == timedelta(minutes=minutes)


def test_default_grace_periods() -> None:
    assert protocol.grace_period_minutes(booking()) == 15
    assert protocol.grace_period_minutes(booking(risk_tier="high")) == 10


@pytest.mark.parametrize(
    ("time_scale", "minutes", "expected"),
    [
        (1, 15, timedelta(minutes=15)),
        (60, 15, timedelta(seconds=15)),
        (60, 1.5, timedelta(seconds=1.5)),
        (3600, 30, timedelta(seconds=0.5)),
        (2.5, 10, timedelta(minutes=4)),
    ],
)
def test_scaled_compresses_minutes(time_scale: float, minutes: float, expected: timedelta) -> None:
    assert ProtocolSettings(time_scale=time_scale).scaled(minutes) == expected


@pytest.mark.parametrize("time_scale", [0, 0.5, 3601])
def test_time_scale_outside_bounds_is_refused(time_scale: float) -> None:
    with pytest.raises(ValidationError) as raised:
        ProtocolSettings(time_scale=time_scale)
    assert [detail["loc"] for detail in raised.value.errors()] == [("time_scale",)]


@pytest.mark.parametrize(
    ("risk_tier", "grace"),
    [(RiskTier.STANDARD, timedelta(seconds=20)), (RiskTier.HIGH, timedelta(seconds=8))],
)
def test_grace_period_is_scaled(risk_tier: RiskTier, grace: timedelta) -> None:
    b = booking(risk_tier=risk_tier, protocol={**SETTINGS, "time_scale": 60})
    assert protocol.grace_period(b) == grace
    # The rule itself still speaks in real minutes.
    assert protocol.grace_period_minutes(b) == grace.total_seconds()


def test_attempt_spacing_is_scaled() -> None:
    b = booking(protocol={"attempt_spacing_minutes": 30, "time_scale": 60})
    assert protocol.attempt_spacing(b) == timedelta(seconds=30)
    assert protocol.attempt_spacing(booking()) == timedelta(minutes=15)


@pytest.mark.parametrize(
    ("risk_tier", "max_attempts", "expected"),
    [
        (RiskTier.HIGH, 4, 1),
        (RiskTier.HIGH, 1, 1),
        (RiskTier.ELEVATED, 4, 4),
        (RiskTier.STANDARD, 4, 4),
        (RiskTier.STANDARD, 1, 1),
        (RiskTier.STANDARD, 10, 10),
    ],
)
def test_escalation_after_attempt(risk_tier: RiskTier, max_attempts: int, expected: int) -> None:
    b = booking(risk_tier=risk_tier, protocol={"max_attempts": max_attempts})
    assert protocol.escalation_after_attempt(b) == expected


def test_consent_on_file_is_no_blocker() -> None:
    assert protocol.escalation_blocker(booking()) is None


def test_no_consent_blocks_escalation() -> None:
    b = booking(**without_consent(booking_data()))
    assert b.client.emergency_contact is not None
    assert protocol.escalation_blocker(b) == "no consent on file"


def test_no_contact_blocks_escalation() -> None:
    data = booking_data()
    data["client"] = {**data["client"], "emergency_contact": None}
    assert protocol.escalation_blocker(booking(**data)) == "no emergency contact on file"


@pytest.mark.parametrize(
    ("escalated", "outcome"),
    [(True, Outcome.UNREACHABLE_ESCALATED), (False, Outcome.UNREACHABLE_ESCALATION_BLOCKED)],
)
def test_unreachable_outcome(escalated: bool, outcome: Outcome) -> None:
    result = protocol.unreachable_outcome(escalated=escalated)
    assert result is outcome
    assert result.is_no_show


@pytest.mark.parametrize(
    ("outcome", "no_show"),
    [
        (Outcome.ATTENDED, False),
        (Outcome.ATTENDED_LATE, False),
        (Outcome.CANCELLED, False),
        (Outcome.REACHED, True),
        (Outcome.UNREACHABLE_ESCALATED, True),
        (Outcome.UNREACHABLE_ESCALATION_BLOCKED, True),
    ],
)
def test_outcome_is_no_show(outcome: Outcome, no_show: bool) -> None:
    assert outcome.is_no_show is no_show


# -- the session's facts and whom escalation calls ---------------------------------------


def test_news_noted_first_check_in_and_response_win_the_latest_reschedule_counts() -> None:
    b = booking()
    first, second = CheckIn(), CheckIn(at=b.start)
    facts = SessionFacts.booked(b).noted(first).noted(second)
    assert facts.check_in is first
    later = Reschedule(start=b.start + timedelta(days=1))
    latest = Reschedule(start=b.start + timedelta(days=2))
    facts = facts.noted(later).noted(latest)
    taken, facts = facts.rescheduling()
    assert taken is latest
    assert facts.reschedule is None
    assert facts.stop_reason() == "the client checked in"


def test_a_text_counts_for_the_clients_own_day_not_utcs() -> None:
    data = booking_data()
    data["client"] = {**data["client"], "preferences": {"text": True}}
    b = booking(**data)  # the client is in America/Los_Angeles (UTC-8 in December)
    sent = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)  # 23:30 on 30 November, client's time
    facts = SessionFacts.booked(b).apply(
        events.MessageSent(attempt=1, channel=Channel.TEXT), sent)
    same_evening = datetime(2026, 12, 1, 7, 50, tzinfo=UTC)
    next_morning = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # 09:00 on 1 December
    assert facts.skip_reason(b, Channel.TEXT, same_evening) == "a text was already sent today"
    assert facts.skip_reason(b, Channel.TEXT, next_morning) is None
    assert facts.attempts == 1


def test_a_skipped_step_is_not_an_attempt_and_an_invalid_number_retires_the_phone() -> None:
    b = booking()
    facts = SessionFacts.booked(b).apply(
        events.OutreachSkipped(attempt=2, channel=Channel.VOICEMAIL, reason="no consent"),
        b.start)
    assert facts.attempts == 0
    facts = facts.apply(events.OutreachFailed(attempt=1, channel=Channel.CALL,
                                              reason="invalid contact"), b.start)
    assert facts.unusable == {Channel.CALL, Channel.VOICEMAIL, Channel.TEXT}
    assert not facts.reachable(b)  # the default ladder is call and voicemail


def _directory() -> tuple[ClientRecord, ConsentDefaults]:
    record = ClientRecord(
        ref="c-1", first_name="Robin", time_zone="America/Los_Angeles",
        phones=(PhonePoint(number="+14155550123"),),
        emergency_contacts=(DirectoryContact(name="Sam", phone="+14155550999"),
                            DirectoryContact(name="Kim", phone="+14155550998")),
    )
    return record, ConsentDefaults()


def test_without_consent_only_a_clinicians_override_reaches_the_first_contact() -> None:
    record, defaults = _directory()
    at = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    refused = escalation.contact_to_call(record, (), at=at, risk_tier=RiskTier.HIGH,
                                         defaults=defaults, override=False)
    assert isinstance(refused, ConsentDecision)
    assert not refused.allowed
    chosen = escalation.contact_to_call(record, (), at=at, risk_tier=RiskTier.HIGH,
                                        defaults=defaults, override=True)
    assert chosen == (EmergencyContact(name="Sam", phone="+14155550999"), None)
    alone = record.model_copy(update={"emergency_contacts": ()})
    nobody = escalation.contact_to_call(alone, (), at=at, risk_tier=RiskTier.HIGH,
                                        defaults=defaults, override=True)
    assert isinstance(nobody, ConsentDecision)
