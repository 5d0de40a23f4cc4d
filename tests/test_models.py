"""SessionBooking validation and the clock-dependent intake check, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from missed_session.domain.intake import BookingRejectedError, check_bookable
from missed_session.domain.models import RiskTier, SessionBooking
from tests.support.factories import booking, booking_data

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _with_client(**changes: Any) -> dict[str, Any]:
    data = booking_data()
    data["client"] = {**data["client"], **changes}
    return data


def _with_contact(**changes: Any) -> dict[str, Any]:
    data = booking_data()
    contact = {**data["client"]["emergency_contact"], **changes}
    data["client"] = {**data["client"], "emergency_contact": contact}
    return data


def _without(field: str) -> dict[str, Any]:
    data = booking_data()
    del data[field]
    return data


def _locs(error: ValidationError) -> list[tuple[str | int, ...]]:
    return [tuple(detail["loc"]) for detail in error.errors()]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        pytest.param(_with_client(phone="4155550123"), ("client", "phone"), id="phone-no-plus"),
        pytest.param(_with_client(phone="+1 415 555 0123"), ("client", "phone"), id="phone-spaces"),
        pytest.param(_with_client(phone="+0123456789"), ("client", "phone"), id="phone-leading-0"),
        pytest.param(
            _with_client(time_zone="Mars/Olympus_Mons"), ("client", "time_zone"), id="time-zone"
        ),
        pytest.param(booking_data(start="2026-03-02T09:00:00"), ("start",), id="naive-start"),
        pytest.param(_without("therapist_id"), ("therapist_id",), id="missing-therapist"),
        pytest.param(
            _with_contact(consent=True, consent_date=None),
            ("client", "emergency_contact"),
            id="consent-without-date",
        ),
        pytest.param(
            booking_data(protocol={"grace_period_minutes": 4}),
            ("protocol", "grace_period_minutes"),
            id="grace-below-5",
        ),
        pytest.param(
            booking_data(protocol={"grace_period_minutes": 31}),
            ("protocol", "grace_period_minutes"),
            id="grace-above-30",
        ),
        pytest.param(
            booking_data(
                protocol={"grace_period_minutes": 10, "high_risk_grace_period_minutes": 15}
            ),
            ("protocol",),
            id="high-risk-grace-longer",
        ),
        pytest.param(booking_data(room="4B"), ("room",), id="unknown-field"),
        pytest.param(
            _with_client(middle_name="Lee"), ("client", "middle_name"), id="unknown-client-field"
        ),
        pytest.param(booking_data(session_id="s 42"), ("session_id",), id="session-id-space"),
        pytest.param(booking_data(session_id=""), ("session_id",), id="session-id-empty"),
        pytest.param(booking_data(session_id="-42"), ("session_id",), id="session-id-leading-dash"),
        pytest.param(booking_data(session_id="s" * 65), ("session_id",), id="session-id-too-long"),
    ],
)
def test_bad_field_is_named(data: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        SessionBooking.model_validate(data)
    assert _locs(raised.value) == [loc]


def test_consent_error_explains_the_missing_date() -> None:
    with pytest.raises(ValidationError, match="consent_date is required"):
        SessionBooking.model_validate(_with_contact(consent=True, consent_date=None))


def test_contact_without_consent_needs_no_date() -> None:
    parsed = SessionBooking.model_validate(_with_contact(consent=False, consent_date=None))
    assert parsed.client.emergency_contact is not None
    assert parsed.client.emergency_contact.consent is False


@pytest.mark.parametrize("minutes", [5, 30])
def test_grace_period_bounds_are_inclusive(minutes: int) -> None:
    parsed = booking(
        protocol={"grace_period_minutes": minutes, "high_risk_grace_period_minutes": 5}
    )
    assert parsed.protocol.grace_period_minutes == minutes


def test_high_risk_grace_equal_to_standard_is_allowed() -> None:
    parsed = booking(protocol={"grace_period_minutes": 12, "high_risk_grace_period_minutes": 12})
    assert parsed.protocol.high_risk_grace_period_minutes == 12


def test_start_with_offset_keeps_its_instant() -> None:
    parsed = booking(start="2026-03-02T10:00:00+01:00")
    assert parsed.start == NOW


def test_booking_is_immutable() -> None:
    parsed = booking()
    with pytest.raises(ValidationError):
        parsed.session_id = "other"  # type: ignore[misc]


def test_booking_round_trips_through_json() -> None:
    original = booking(
        risk_tier="high",
        modality="telehealth",
        protocol={
            "grace_period_minutes": 20,
            "high_risk_grace_period_minutes": 7,
            "max_attempts": 4,
            "time_scale": 60,
        },
    )
    restored = SessionBooking.model_validate_json(original.model_dump_json())
    assert restored == original
    assert restored.model_dump_json() == original.model_dump_json()
    assert restored.start.utcoffset() == original.start.utcoffset()


def test_workflow_id_is_derived_from_session_id() -> None:
    assert booking(session_id="abc-42").workflow_id == "session-abc-42"


@pytest.mark.parametrize(
    ("risk_tier", "grace_minutes"),
    [(RiskTier.STANDARD, 15), (RiskTier.ELEVATED, 15), (RiskTier.HIGH, 10)],
)
def test_check_bookable_refuses_start_past_its_grace_period(
    risk_tier: RiskTier, grace_minutes: int
) -> None:
    late = booking(start=(NOW - timedelta(minutes=grace_minutes)).isoformat(), risk_tier=risk_tier)
    with pytest.raises(BookingRejectedError) as raised:
        check_bookable(late, NOW)
    assert raised.value.field == "start"
    assert str(raised.value).startswith("start: ")
    assert "grace period" in raised.value.problem


@pytest.mark.parametrize(
    ("risk_tier", "grace_minutes"),
    [(RiskTier.STANDARD, 15), (RiskTier.ELEVATED, 15), (RiskTier.HIGH, 10)],
)
def test_check_bookable_accepts_start_inside_its_grace_period(
    risk_tier: RiskTier, grace_minutes: int
) -> None:
    started = booking(
        start=(NOW - timedelta(minutes=grace_minutes) + timedelta(seconds=1)).isoformat(),
        risk_tier=risk_tier,
    )
    check_bookable(started, NOW)


def test_check_bookable_accepts_future_start() -> None:
    check_bookable(booking(start=(NOW + timedelta(days=7)).isoformat()), NOW)


def test_check_bookable_compares_instants_across_zones() -> None:
    # 09:50 in Berlin (UTC+1) is 08:50 UTC: 10 minutes before NOW, inside 15 minutes.
    check_bookable(booking(start="2026-03-02T09:50:00+01:00"), NOW)
    # 09:40 in Berlin is 08:40 UTC: 20 minutes before NOW, past 15 minutes.
    with pytest.raises(BookingRejectedError):
        check_bookable(booking(start="2026-03-02T09:40:00+01:00"), NOW)


def test_model_validation_does_not_depend_on_the_clock() -> None:
    # A booking long past must still deserialise (the workflow re-reads it on replay).
    old = booking(start="2020-01-01T09:00:00+00:00")
    assert SessionBooking.model_validate_json(old.model_dump_json()) == old
