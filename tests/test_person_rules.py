"""One person, one ladder: the pure rules (`missed_session.domain.person`), property-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from missed_session.domain import protocol
from missed_session.domain.models import Outcome, ProtocolSettings, SamePerson
from missed_session.domain.person import (
    FOLLOWED,
    Follow,
    LadderEnded,
    OwnLadder,
    after_leader,
    join_wait,
    joined_outcome,
)
from tests.support.factories import booking

BASE = datetime(2026, 12, 7, 15, tzinfo=UTC)
minutes = st.integers(min_value=0, max_value=24 * 60).map(lambda m: timedelta(minutes=m))
spacings = st.integers(min_value=5, max_value=240).map(lambda m: timedelta(minutes=m))
endings = st.builds(LadderEnded, leader=st.just("s-1"), outcome=st.sampled_from(Outcome),
                    ended_at=minutes.map(lambda m: BASE + m))


@given(rule=st.sampled_from(SamePerson), ended=st.none() | endings, now=minutes,
       spacing=spacings, seen=minutes)
def test_no_ladder_starts_within_the_spacing_of_the_one_before(
    rule: SamePerson, ended: LadderEnded | None, now: timedelta, spacing: timedelta,
    seen: timedelta,
) -> None:
    # Whatever the rule and however the leader ended (or went silent), the joiner's own
    # first call comes an attempt spacing after the last moment the leader may have called.
    last_seen = BASE + seen
    then = after_leader(rule, ended, now=BASE + now, spacing=spacing, last_seen=last_seen)
    if isinstance(then, OwnLadder):
        last = ended.ended_at if ended is not None else last_seen
        assert then.not_before >= last + spacing
        assert then.not_before >= BASE + now


@given(ended=endings, now=minutes, spacing=spacings)
def test_join_follows_every_ending_and_space_only_an_unreached_person_gets_a_second_ladder(
    ended: LadderEnded, now: timedelta, spacing: timedelta,
) -> None:
    joined = after_leader(SamePerson.JOIN, ended, now=BASE + now, spacing=spacing,
                          last_seen=BASE)
    assert joined == Follow(joined_outcome(ended.outcome))
    spaced = after_leader(SamePerson.SPACE, ended, now=BASE + now, spacing=spacing,
                          last_seen=BASE)
    assert isinstance(spaced, Follow) is (ended.outcome in FOLLOWED)


@given(outcome=st.sampled_from(Outcome))
def test_a_joiner_closes_as_a_missed_session(outcome: Outcome) -> None:
    # The joiner's session was missed, whatever happened at the leader's.
    assert joined_outcome(outcome).is_no_show


@given(attempts=st.integers(min_value=1, max_value=10),
       spacing=st.integers(min_value=5, max_value=240),
       wait=st.integers(min_value=1, max_value=168))
def test_a_joiner_waits_longer_than_any_ladder_and_clinician_wait(
    attempts: int, spacing: int, wait: int,
) -> None:
    session = booking().model_copy(update={"protocol": ProtocolSettings(
        max_attempts=attempts, attempt_spacing_minutes=spacing, clinician_wait_hours=wait)})
    ladder = protocol.attempt_spacing(session) * attempts + protocol.clinician_wait(session)
    assert join_wait(session) > ladder + timedelta(hours=12)
