"""Properties of the protocol's decisions, over generated bookings, clocks and replies.

The rules the workflow relies on, checked for every case Hypothesis can find rather than
the handful the example tests name: never outreach outside the client's contact window,
never escalation without consent or a clinician's override, never more attempts than the
protocol allows, and the opt-out keywords as carriers apply them.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from missed_session.domain import contact_window, messages, protocol
from missed_session.domain.models import (
    ConsentScope,
    ContactWindow,
    RiskTier,
    SessionBooking,
)
from tests.factories import booking, booking_data

ZONES = ("America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin",
         "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland", "UTC")
"""Client zones with daylight-saving changes on both hemispheres, a half-hour offset, none."""

instants = st.datetimes(
    # Hypothesis takes naive bounds and attaches the zone itself.
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@st.composite
def windows(draw: st.DrawFn) -> ContactWindow:
    """A window from 06:00-12:00 to 17:00-23:59: the hours a practice would choose."""
    start = draw(st.integers(min_value=6 * 60, max_value=12 * 60))
    end = draw(st.integers(min_value=17 * 60, max_value=23 * 60 + 59))
    return ContactWindow(start=time(start // 60, start % 60), end=time(end // 60, end % 60))


@st.composite
def bookings(draw: st.DrawFn) -> SessionBooking:
    data: dict[str, Any] = booking_data()
    client = dict(data["client"])
    if draw(st.booleans()):
        client["emergency_contact"] = None
    else:
        client["emergency_contact"] = {
            **client["emergency_contact"],
            "consent": draw(st.booleans()),
            "consent_scope": draw(st.sampled_from(list(ConsentScope))).value,
        }
    after = st.none() | st.integers(min_value=1, max_value=10)
    return booking(**{
        **data,
        "client": client,
        "risk_tier": draw(st.sampled_from(list(RiskTier))).value,
        "protocol": {
            "max_attempts": draw(st.integers(min_value=1, max_value=10)),
            "escalate_after": {"standard": draw(after), "elevated": draw(after),
                               "high": draw(after)},
            "high_risk_escalation_outside_window": draw(st.booleans()),
        },
    })


# -- never outreach outside the contact window ---------------------------------------------


@settings(max_examples=150)
@given(at=instants, zone=st.sampled_from(ZONES), window=windows())
def test_outreach_waits_for_an_open_window_and_never_earlier_than_asked(
    at: datetime, zone: str, window: ContactWindow
) -> None:
    opens = contact_window.next_allowed(at, zone, window)
    assert opens >= at
    assert contact_window.is_open(opens, zone, window)
    if contact_window.is_open(at, zone, window):
        assert opens == at
    else:  # nothing in between was open: the first allowed instant, not a later one
        assert not contact_window.is_open(opens - timedelta(minutes=1), zone, window) or (
            opens - timedelta(minutes=1) < at
        )


@settings(max_examples=150)
@given(at=instants, zone=st.sampled_from(ZONES), window=windows())
def test_a_step_started_inside_the_window_is_bounded_by_its_close(
    at: datetime, zone: str, window: ContactWindow
) -> None:
    opens = contact_window.next_allowed(at, zone, window)
    closes = contact_window.closes_at(opens, zone, window)
    assert closes > opens
    assert contact_window.is_open(closes - timedelta(seconds=1), zone, window)
    assert not contact_window.is_open(closes, zone, window)
    assert closes - opens <= timedelta(hours=19)  # at most the widest window


# -- never escalation without consent or an override ---------------------------------------


@settings(max_examples=150)
@given(session=bookings())
def test_escalation_on_consent_alone_needs_a_contact_and_consent_covering_the_risk(
    session: SessionBooking,
) -> None:
    contact = session.client.emergency_contact
    if protocol.escalation_blocker(session) is None:
        assert contact is not None
        assert contact.consent
        assert (contact.consent_scope is ConsentScope.UNREACHABLE
                or session.risk_tier in {RiskTier.ELEVATED, RiskTier.HIGH})
    else:
        assert not protocol.may_escalate(session)


# -- never more attempts than the protocol allows ------------------------------------------


@settings(max_examples=150)
@given(session=bookings())
def test_escalation_is_considered_within_the_ladder_and_each_channel_once(
    session: SessionBooking,
) -> None:
    after = protocol.escalation_after_attempt(session)
    assert 1 <= after <= session.protocol.max_attempts
    steps = protocol.outreach_channels(session)
    assert sorted(steps) == sorted(session.protocol.channels)


# -- who answered --------------------------------------------------------------------------


@settings(max_examples=150)
@given(session=bookings(), body=st.text(max_size=80))
def test_no_text_alone_ends_a_high_risk_session_and_no_wrong_number_ever_does(
    session: SessionBooking, body: str
) -> None:
    unclear = protocol.reply_not_the_client(session, body)
    if session.risk_tier is RiskTier.HIGH:
        assert unclear is not None
    assert protocol.reply_not_the_client(session, f"{body} wrong number") is not None


# -- opt-out keywords ----------------------------------------------------------------------


padding = st.text(alphabet=" \t\n", max_size=3)


@given(word=st.sampled_from(sorted(messages.OPT_OUT_KEYWORDS)), before=padding, after=padding,
       upper=st.lists(st.booleans(), min_size=12, max_size=12))
def test_an_opt_out_keyword_alone_opts_out_in_any_case_and_spacing(
    word: str, before: str, after: str, upper: list[bool]
) -> None:
    cased = "".join(c.upper() if up else c.lower() for c, up in zip(word, upper, strict=False))
    assert messages.keyword(f"{before}{cased}{after}") is messages.Keyword.OPT_OUT


@given(rest=st.text(max_size=60))
def test_stop_followed_by_anything_opts_out(rest: str) -> None:
    assert messages.is_opt_out(f"Stop {rest}")
