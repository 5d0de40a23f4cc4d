"""Properties of the protocol's decisions, over generated bookings, trails, clocks, replies.

The rules the workflow relies on, checked for every case Hypothesis can find rather than
the handful the example tests name: never outreach outside the client's contact window,
never escalation without consent or a clinician's recorded decision, never more attempts
than the protocol allows, and the opt-out keywords as carriers apply them. The session's
facts are folded from generated trails (steps that ran or were skipped, opt-outs,
decisions, escalations, responses), and the one escalation decision
(`escalation.next_escalation`) is asked at any moment of the protocol.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from missed_session.domain import contact_window, escalation, events, messages, protocol
from missed_session.domain.escalation import Block, Escalate, Wait
from missed_session.domain.facts import Escalation, SessionFacts, fold, window_open
from missed_session.domain.models import (
    CallResult,
    Channel,
    ClinicianDecision,
    ConsentScope,
    ContactWindow,
    DecisionKind,
    ResponseChannel,
    RiskTier,
    SessionBooking,
)
from tests.support.factories import booking, booking_data

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
    client["time_zone"] = draw(st.sampled_from(ZONES))
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
            "channels": draw(st.sampled_from([["call", "voicemail"], ["call", "text"],
                                              ["text", "email"], ["voicemail", "call"]])),
            "contact_window": draw(windows()).model_dump(mode="json"),
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
        assert contact is None or not contact.consent or (
            contact.consent_scope is ConsentScope.SAFETY_CONCERN
            and session.risk_tier is RiskTier.STANDARD
        )


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


def step_events(max_attempts: int) -> st.SearchStrategy[events.EventDetails]:
    attempts = st.integers(min_value=1, max_value=max_attempts)
    channels = st.sampled_from(list(Channel))
    return st.one_of(
        st.builds(events.OutreachAttempted, attempt=attempts,
                  result=st.sampled_from(list(CallResult))),
        st.builds(events.VoicemailLeft, attempt=attempts),
        st.builds(events.MessageSent, attempt=attempts,
                  channel=st.sampled_from([Channel.TEXT, Channel.EMAIL])),
        st.builds(events.OutreachFailed, attempt=attempts, channel=channels,
                  reason=st.sampled_from(["invalid contact", "channel failed after retries"])),
        st.builds(events.OutreachUncertain, attempt=attempts, channel=channels,
                  reason=st.just("delivery uncertain")),
        st.builds(events.OutreachSkipped, attempt=attempts, channel=channels,
                  reason=st.just("no consent for text")),
    )


def other_events() -> st.SearchStrategy[events.EventDetails]:
    return st.one_of(
        st.builds(events.OptedOut, channel=st.just(Channel.TEXT)),
        st.builds(events.ClinicianDecisionMade, decision=st.sampled_from(list(DecisionKind)),
                  clinician_id=st.just("t-ana"), reason=st.just("r"),
                  legal_basis=st.just("vital interests")),
        st.builds(events.EscalationBlocked, reason=st.just("no consent on file")),
        st.builds(events.EscalationUncertain, basis=st.just("consent on file"),
                  reason=st.just("delivery uncertain")),
        st.builds(events.EscalationSent, basis=st.just("consent on file")),
        st.builds(events.ClientResponded, channel=st.sampled_from(list(ResponseChannel)),
                  responder=st.just("client")),
        st.builds(events.CheckedIn, late=st.just(True)),
    )


@st.composite
def sessions(draw: st.DrawFn) -> tuple[SessionBooking, list[tuple[events.EventDetails,
                                                                  datetime]], SessionFacts]:
    """A booking, a trail of its events (with their times), and the facts they fold to."""
    session = draw(bookings())
    start = draw(instants)
    trail = draw(st.lists(
        st.one_of(step_events(session.protocol.max_attempts), other_events()), max_size=12,
    ))
    timed = [(details, start + timedelta(minutes=15 * n)) for n, details in enumerate(trail)]
    facts = SessionFacts.booked(session)
    for details, at in timed:
        facts = facts.apply(details, at)
    return session, timed, facts


overrides = st.none() | st.builds(ClinicianDecision, clinician_id=st.just("t-ana"),
                                  reason=st.just("no answer for hours"),
                                  legal_basis=st.just("vital interests"))
moments = st.none() | st.integers(min_value=1, max_value=5)


Asked = tuple[SessionBooking, SessionFacts, datetime, ClinicianDecision | None,
              escalation.EscalationDecision]


@st.composite
def asked(draw: st.DrawFn) -> Asked:
    """The escalation decision, asked at a drawn moment of a drawn session."""
    booked, _, facts = draw(sessions())
    now, override = draw(instants), draw(overrides)
    decision = escalation.next_escalation(facts, booked, now, draw(moments), override,
                                          deferred=draw(st.booleans()))
    return booked, facts, now, override, decision


# -- never an escalation without consent or a recorded decision -------------------------------


@settings(max_examples=120)
@given(asked=asked())
def test_escalation_needs_consent_covering_the_situation_or_a_recorded_decision(
    asked: Asked,
) -> None:
    booked, facts, _, override, decision = asked
    if isinstance(decision, Escalate):
        assert booked.client.emergency_contact is not None
        if decision.basis == "consent on file":
            assert override is None
            assert protocol.escalation_blocker(booked) is None
        else:
            assert override is not None
            assert facts.escalate_now_decisions > 0
        assert facts.escalation is not Escalation.SENT  # never twice once told
    if override is None and decision is not None:
        # The protocol's own escalation: once, and never after contact or a decision.
        assert facts.escalation is None
        assert not facts.outreach_stops()


# -- never outside the contact window --------------------------------------------------------


@settings(max_examples=120)
@given(asked=asked())
def test_escalation_goes_outside_the_window_only_for_high_risk_by_protocol_or_a_decision(
    asked: Asked,
) -> None:
    booked, _, now, override, decision = asked
    if isinstance(decision, Escalate):
        assert (decision.outside_window is None) == window_open(booked, now)
        if decision.outside_window is not None and override is None:
            assert booked.risk_tier is RiskTier.HIGH
            assert booked.protocol.high_risk_escalation_outside_window
    if isinstance(decision, Wait):
        assert override is None
        assert not window_open(booked, now)
        assert decision.until > now
        assert window_open(booked, decision.until)
    if isinstance(decision, Block):
        assert decision.reason


@settings(max_examples=120)
@given(session=sessions(), now=instants, channel=st.sampled_from(list(Channel)))
def test_no_step_starts_outside_the_window_or_against_the_clients_rules(
    session: tuple[SessionBooking, Any, SessionFacts], now: datetime, channel: Channel,
) -> None:
    booked, _, facts = session
    if facts.step_refusal(booked, channel, now) is None:
        assert window_open(booked, now)
        assert protocol.skip_reason(booked, channel) is None
        if channel is Channel.TEXT:
            assert not facts.opted_out_of_text
            assert not facts.skip_reason(booked, channel, now)


# -- never more attempts than the protocol ------------------------------------------------------


@settings(max_examples=120)
@given(session=sessions())
def test_attempts_are_the_steps_that_ran_and_never_more_than_the_protocol(
    session: tuple[SessionBooking, Any, SessionFacts],
) -> None:
    booked, trail, facts = session
    ran = [details.attempt for details, _ in trail
           if isinstance(details, events.OutreachAttempted | events.VoicemailLeft
                         | events.MessageSent | events.OutreachFailed
                         | events.OutreachUncertain)]
    assert facts.attempts == max(ran, default=0)
    assert facts.attempts <= booked.protocol.max_attempts


@settings(max_examples=80)
@given(session=sessions())
def test_the_ladder_considers_escalation_within_its_attempts(
    session: tuple[SessionBooking, Any, SessionFacts],
) -> None:
    booked, _, facts = session
    after = protocol.escalation_after_attempt(booked)
    assert 1 <= after <= booked.protocol.max_attempts
    # Unreachable or not, the protocol's own escalation is due by the last attempt.
    for attempt in range(after, booked.protocol.max_attempts + 1):
        decision = escalation.next_escalation(facts, booked, datetime.now(UTC), attempt, None)
        if facts.escalation is None and not facts.outreach_stops():
            assert decision is not None


# -- the trail and the memory cannot disagree ----------------------------------------------------


@settings(max_examples=80)
@given(session=sessions())
def test_the_stored_trail_folds_to_the_facts_the_workflow_held(
    session: tuple[SessionBooking, Any, SessionFacts],
) -> None:
    booked, trail, facts = session
    rows = [events.new_event(session_id=booked.session_id, sequence=n, occurred_at=at,
                             details=details)
            for n, (details, at) in enumerate(trail, start=1)]
    assert fold(booked, rows) == facts


@settings(max_examples=80)
@given(session=sessions())
def test_an_invalid_address_retires_every_channel_sharing_it(
    session: tuple[SessionBooking, Any, SessionFacts],
) -> None:
    _, trail, facts = session
    for details, _ in trail:
        if isinstance(details, events.OutreachFailed) and details.reason == "invalid contact":
            assert protocol.SAME_ADDRESS[details.channel] <= facts.unusable


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
