"""The mass no-show brake: its decision and facts (pure), its store and command line.

The workflow's side (200 sessions missed together, 3 ordinary no-shows) is in
`tests/test_brake.py`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import starter
from missed_session.domain import brake, events
from missed_session.domain.brake import BrakeDecision, BrakeSettings, BrakeState, Counts
from missed_session.domain.facts import SessionFacts
from missed_session.domain.models import DecisionKind, RiskTier
from missed_session.domain.notices import Policy, Step, Target
from missed_session.domain.practice import PracticeFileError, parse
from missed_session.store.brake import BrakeStore
from tests.support.audit_export import cli_env
from tests.support.factories import booking

__all__ = ["cli_env"]  # the fixture, shared

AT = datetime(2026, 12, 7, 9, 15, tzinfo=UTC)
SETTINGS = BrakeSettings()
NO_BASELINE = Counts(missed=0, due=0)

settings_st = st.builds(
    BrakeSettings,
    window_minutes=st.integers(5, 240),
    min_no_shows=st.integers(5, 100),
    min_share_percent=st.integers(1, 100),
    times_baseline=st.integers(1, 10),
)
baseline_st = st.integers(0, 5000).flatmap(
    lambda due: st.builds(Counts, missed=st.integers(0, due), due=st.just(due)))


@given(settings=settings_st, baseline=baseline_st.filter(lambda b: b.share <= 0.3))
def test_two_hundred_missed_together_hold(settings: BrakeSettings, baseline: Counts) -> None:
    """An outage: every one of 200 due sessions missed, against any ordinary baseline."""
    assert brake.holds(Counts(missed=200, due=200), baseline, settings)


@given(settings=settings_st, baseline=baseline_st, due=st.integers(3, 10_000))
def test_three_no_shows_never_hold(settings: BrakeSettings, baseline: Counts, due: int) -> None:
    """Three no-shows are an ordinary morning, whatever else was due."""
    assert not brake.holds(Counts(missed=3, due=due), baseline, settings)


@given(settings=settings_st, baseline=baseline_st, due=st.integers(0, 2000),
       data=st.data())
def test_monotonic_in_the_missed_count(settings: BrakeSettings, baseline: Counts, due: int,
                                       data: st.DataObject) -> None:
    """More missed sessions in the same window never release what fewer held."""
    fewer = data.draw(st.integers(0, due))
    more = data.draw(st.integers(fewer, due))
    if brake.holds(Counts(missed=fewer, due=due), baseline, settings):
        assert brake.holds(Counts(missed=more, due=due), baseline, settings)


@given(settings=settings_st, baseline=baseline_st, missed=st.integers(0, 1000),
       extra=st.integers(0, 1000))
def test_monotonic_when_more_sessions_are_missed_together(
    settings: BrakeSettings, baseline: Counts, missed: int, extra: int,
) -> None:
    """A burst that grows (every new session missed too) keeps holding."""
    due = missed + 5
    if brake.holds(Counts(missed=missed, due=due), baseline, settings):
        assert brake.holds(Counts(missed=missed + extra, due=due + extra), baseline, settings)


def test_a_practice_whose_clients_often_miss_is_judged_against_itself() -> None:
    usual = Counts(missed=40, due=100)  # 40 % is this practice's ordinary
    assert not brake.holds(Counts(missed=60, due=100), usual, SETTINGS)  # 60 % < 3 x 40 %
    assert brake.holds(Counts(missed=12, due=12), Counts(missed=5, due=100), SETTINGS)


def test_a_busy_hour_with_its_usual_no_shows_does_not_hold() -> None:
    assert not brake.holds(Counts(missed=20, due=200), NO_BASELINE, SETTINGS)


def test_high_risk_holds_release_after_the_short_limit() -> None:
    settings = BrakeSettings(high_risk_release_minutes=10, release_minutes=120)
    assert settings.release_after(RiskTier.HIGH) == 10
    assert settings.release_after(RiskTier.STANDARD) == 120


def test_the_page_names_the_count_the_window_and_the_likely_cause() -> None:
    title = brake.page_title(200, 30, "7")
    assert title.startswith("200 sessions missed within 30 minutes: a scheduler or "
                            "check-in outage?")
    assert "episode 7" in title
    assert brake.likely_cause(12, 30, "telehealth") == (
        "12 telehealth sessions missed within 30 minutes: a video platform or check-in outage?")


def test_the_page_climbs_without_the_therapist() -> None:
    policy = Policy(name="urgent", steps=(Step(notify=Target.THERAPIST, minutes=5),
                                          Step(notify=Target.SUPERVISOR, minutes=10)))
    assert [s.notify for s in brake.supervisor_ladder(policy).steps] == [Target.SUPERVISOR]
    only_therapist = Policy(name="t", steps=(Step(notify=Target.THERAPIST, minutes=5),))
    assert [s.notify for s in brake.supervisor_ladder(only_therapist).steps] == [
        Target.ON_CALL, Target.SUPERVISOR]


# -- the facts' fold -------------------------------------------------------------------------


def held(episode: str = "1") -> SessionFacts:
    return SessionFacts(start=AT).apply(events.BrakeHeld(
        episode=episode, no_shows=200, due=200, window_minutes=30, release_after_minutes=15,
    ), AT)


def test_a_hold_is_remembered_and_a_decision_noted_once_while_held() -> None:
    facts = held()
    assert facts.brake is BrakeState.HELD
    release = BrakeDecision(kind="release", clinician_id="supervisor-maya")
    noted = facts.brake_noted(release)
    assert noted.brake_decision == release
    assert noted.brake_noted(BrakeDecision(kind="stand_down", clinician_id="x")) == noted
    assert SessionFacts(start=AT).brake_noted(release).brake_decision is None  # not held


def test_a_decision_for_another_episode_is_not_taken() -> None:
    other = BrakeDecision(kind="release", clinician_id="supervisor-maya", episode="2")
    assert held("1").brake_noted(other).brake_decision is None


def test_a_stand_down_ends_outreach_and_a_release_does_not() -> None:
    stood = held().apply(events.BrakeStoodDown(episode="1", by="s", reason="outage"), AT)
    assert stood.brake is BrakeState.STOOD_DOWN
    assert stood.ending is DecisionKind.STAND_DOWN
    assert stood.outreach_stops()
    released = held().apply(events.BrakeReleased(episode="1", by="s", reason="real"), AT)
    assert released.brake is BrakeState.RELEASED
    assert not released.outreach_stops()


# -- the practice file -----------------------------------------------------------------------

FILE = """
version = "1"
[protocols.standard]
channels = ["call"]
"""


def test_the_brake_is_off_without_a_table_and_read_from_it() -> None:
    import tomllib

    from missed_session.domain.practice import brake_settings

    assert brake_settings(tomllib.loads(FILE), "p.toml") is None
    text = FILE + "[brake]\nwindow_minutes = 20\nmin_no_shows = 25\n"
    parse(text, "p.toml")
    read = brake_settings(tomllib.loads(text), "p.toml")
    assert read is not None
    assert (read.window_minutes, read.min_no_shows) == (20, 25)


def test_a_practice_with_a_brake_table_books_sessions_that_ask_it() -> None:
    plain = booking()
    assert not plain.protocol.no_show_brake
    assert not parse(FILE, "p.toml").resolve(plain).protocol.no_show_brake
    braked = parse(FILE + "[brake]\n", "p.toml")
    assert braked.brake == BrakeSettings()
    assert braked.resolve(plain).protocol.no_show_brake
    with pytest.raises(PracticeFileError, match="no_show_brake: not allowed"):
        parse(FILE + "no_show_brake = true\n", "p.toml")


@pytest.mark.parametrize(("line", "error"), [
    ("min_no_shows = 1", "p.toml: brake.min_no_shows: must be at least 5"),
    ("window = 5", "p.toml: brake.window: unknown setting"),
])
def test_a_bad_brake_setting_names_the_key(line: str, error: str) -> None:
    with pytest.raises(PracticeFileError, match=error):
        parse(FILE + f"[brake]\n{line}\n", "p.toml")


# -- the command line ------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
async def test_brake_status_through_the_command_line(pool: asyncpg.Pool,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`starter.py brake status` reads PostgreSQL only; nothing held yet, then an episode."""
    assert await asyncio.to_thread(starter.main, ["brake", "status"]) == 0
    assert capsys.readouterr().out.strip() == "the brake has held nothing"
    hold = await BrakeStore(pool).hold(
        session_id="s-1", risk_tier="high", at=AT, counts=Counts(missed=40, due=41),
        window_minutes=30, current_for=timedelta(minutes=240))
    assert hold is not None
    assert hold.paged
    again = await BrakeStore(pool).hold(
        session_id="s-1", risk_tier="high", at=AT, counts=Counts(missed=41, due=41),
        window_minutes=30, current_for=timedelta(minutes=240))
    assert again == hold, "a retried check answers the same: s-1 still pages"
    assert await asyncio.to_thread(starter.main, ["brake", "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"episode {hold.episode}: open; 40 sessions missed within 30 minutes")
    assert "s-1" in out
    assert "held" in out
    assert await asyncio.to_thread(starter.main, ["brake", "release"]) == 2  # --clinician


async def test_a_decided_episode_holds_nothing_more_of_its_burst_but_a_later_burst_pages(
    pool: asyncpg.Pool,
) -> None:
    store = BrakeStore(pool)
    burst = Counts(missed=40, due=40)
    first = await store.hold(session_id="s-1", risk_tier="standard", at=AT, counts=burst,
                             window_minutes=30, current_for=timedelta(minutes=240))
    assert first is not None
    assert await store.decide(first.episode, "released", "supervisor-maya", AT)
    late = await store.hold(session_id="s-2", risk_tier="standard",
                            at=AT + timedelta(minutes=10), counts=burst, window_minutes=30,
                            current_for=timedelta(minutes=240))
    assert late is None, "the supervisor judged this burst"
    later = await store.hold(session_id="s-3", risk_tier="standard",
                             at=AT + timedelta(hours=2), counts=burst, window_minutes=30,
                             current_for=timedelta(minutes=240))
    assert later is not None
    assert later.paged
    assert later.episode != first.episode
