"""One person, one ladder: the rules for a no-show while the same person is in outreach.

Outreach is to a person, not to a booking. A client with two sessions 30 minutes apart, or
two client refs that share one phone number, is one person: two independent ladders would
ring the same phone twice in minutes and page the therapist twice about one absence. When
a session is declared a no-show while another session of the same person (same client ref,
or a client ref whose directory entry has the same number) is in outreach, the second
session *joins* the first: the first (the leader) goes on reaching out, the second (the
joiner) waits for the leader's outcome and closes referring to it. The practice may choose
instead to *space* the ladders (`SamePerson.SPACE`): the joiner runs its own ladder once
the leader's has ended without reaching the person, an attempt spacing after it.

Whatever the rule, nobody is called twice within the protocol's attempt spacing: that is
the property `tests/test_person_rules.py` checks over generated endings.

The payloads here cross the workflow boundary (activity input and output, signals between
the two sessions); the decisions are pure functions of them and the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from missed_session.domain import protocol
from missed_session.domain.models import (
    AwareDatetime,
    ClientResponse,
    Model,
    Outcome,
    SamePerson,
    SessionBooking,
)


class LadderLookup(Model):
    """Input of the lookup for a running ladder of the same person."""

    session_id: str
    """The session just declared a no-show (never its own leader)."""
    client_ref: str
    """Its client."""
    phone: str | None = None
    """Its client's number: other client refs with this number are the same person."""
    no_show_at: AwareDatetime
    """When it was declared a no-show: only a ladder that started earlier leads it (two
    no-shows at one instant never wait for each other)."""


class RunningLadder(Model):
    """A session of the same person whose outreach is running (the leader)."""

    session_id: str
    """The leading session."""
    last_event_at: AwareDatetime
    """Its trail's latest event: no step of its ladder is later than this."""


class LadderJoin(Model):
    """Signal to the leader: a session joins its ladder."""

    session_id: str
    """The joining session."""


class LadderEnded(Model):
    """Signal to a joiner: the ladder it joined has ended."""

    leader: str
    """The leading session."""
    outcome: Outcome
    """How the leader's outreach ended."""
    ended_at: AwareDatetime
    """When (no step of that ladder is later)."""


class PersonReached(Model):
    """Signal to the leader: the person came back through the joiner's session."""

    session_id: str = Field(min_length=1)
    """The joining session the response or check-in arrived at."""
    response: ClientResponse
    """The response as the leader records it."""


FOLLOWED = frozenset({Outcome.ATTENDED, Outcome.ATTENDED_LATE, Outcome.REACHED,
                      Outcome.MARKED_SAFE, Outcome.STOOD_DOWN})
"""Leader outcomes that settle the joiner whatever the rule: the person was reached (or a
clinician decided), so a second ladder would only call someone already heard from."""


@dataclass(frozen=True)
class Follow:
    """Close with the leader's outcome (as `joined_outcome` maps it)."""

    outcome: Outcome


@dataclass(frozen=True)
class OwnLadder:
    """Run this session's own ladder, its first attempt not before `not_before`."""

    not_before: datetime
    reason: str


def joined_outcome(leader: Outcome) -> Outcome:
    """The joiner's outcome when it follows a leader that ended with `leader`.

    A person who came to (or was reached about) the other session was reached about this
    one too: attended there is `reached` here, never `attended` (this session was missed).
    """
    if leader in {Outcome.ATTENDED, Outcome.ATTENDED_LATE}:
        return Outcome.REACHED
    if leader is Outcome.CANCELLED:  # cannot lead (a cancelled session never reaches out)
        return Outcome.UNREACHABLE_ESCALATION_BLOCKED
    return leader


def after_leader(rule: SamePerson, ended: LadderEnded | None, *, now: datetime,
                 spacing: timedelta, last_seen: datetime) -> Follow | OwnLadder:
    """What the joiner does once the leader's ladder ended (`ended`) or went silent (None).

    `last_seen`: the latest moment the leader may have reached out (its trail's last event
    at the lookup); `ended.ended_at` supersedes it. A joiner that runs its own ladder
    starts it no sooner than an attempt spacing after that moment.
    """
    if ended is None:
        return OwnLadder(max(now, last_seen + spacing),
                         "the outreach joined ended without telling this session")
    if rule is SamePerson.JOIN or ended.outcome in FOLLOWED:
        return Follow(joined_outcome(ended.outcome))
    return OwnLadder(max(now, ended.ended_at + spacing),
                     f"the practice spaces ladders; the outreach joined ended "
                     f"{ended.outcome.value}")


def join_wait(booking: SessionBooking) -> timedelta:
    """How long a joiner waits for the leader's outcome before it reaches out itself.

    Long enough for any ladder the joiner's protocol could run (every attempt, a night's
    deferral outside the contact window, and the wait for a clinician's decision), so that
    only a leader that ended without telling (its signal lost) falls back on this bound.
    """
    ladder = protocol.attempt_spacing(booking) * (booking.protocol.max_attempts + 1)
    return ladder + protocol.clinician_wait(booking) + booking.protocol.scaled(24 * 60)


def alert_title(leader: str) -> str:
    """The joiner's one no-show alert: it names the session whose outreach it joined."""
    return (f"No-show: outreach to the client is already running for session {leader}; "
            "this session joined it (one ladder for both)")


def client_title(title: str, client_ref: str) -> str:
    """A notice's title as clinicians read it: the words, then whose (pseudonymous ref)."""
    return f"{title} (client {client_ref})"
