"""Caring contacts: brief, non-demanding messages after an episode that ended unresolved.

When a client at risk was never reached (or a clinician chooses it), the practice keeps a
thread open with a series of short messages over months that ask nothing and reveal
nothing: the intervention of Motto & Bostrom (letters over five years) and Comtois et al.
(eleven texts over twelve months), which reduced suicide and attempts in their trials.

Pure: the series' schedule, its messages, when it may start and why it ends. The workflow
(`workflows/caring.py`) sleeps between messages; the activity (`activities/caring.py`)
checks consent as of the day of each message and sends it.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field, field_validator

from missed_session.domain.messages import TEXT_LIMIT, ensure_discreet
from missed_session.domain.models import (
    AwareDatetime,
    CaringOffer,
    ContactWindow,
    Model,
    Outcome,
    RiskTier,
    TimeZoneName,
)

DEFAULT_DAYS = (1, 7, 14, 21, 28, 60, 90, 120, 180, 270, 365)
"""Days after the series starts: eleven messages over twelve months, weekly in the first
month and spreading out after it (the shape of Comtois et al.'s caring texts)."""
SERIES_PREFIX = "caring:"
"""Every series' id (workflow and trail) starts so."""
UNRESOLVED = frozenset({Outcome.UNREACHABLE_ESCALATED, Outcome.UNREACHABLE_ESCALATION_BLOCKED})
"""Outcomes after which a series is offered: the client was never reached."""
AT_RISK = frozenset({RiskTier.ELEVATED, RiskTier.HIGH})
"""Risk tiers the protocol offers a series for on its own (a therapist may choose one for
anyone)."""
STARTED_BY_PROTOCOL = "protocol"
"""`started_by` of a series the protocol started (`offer = "automatic"`)."""

_MESSAGES = (
    "Hi {first_name}, this is {sender}. Thinking of you and hoping you are okay. "
    "No need to reply. Text STOP to end these.",
    "Hi {first_name}, {sender} here, just saying hello. We are here when you want us. "
    "No need to reply. Text STOP to end these.",
    "Hi {first_name}, this is {sender}. Wishing you well today. No reply needed. "
    "Text STOP to end these.",
)
"""The reviewed messages, used in turn: they ask for nothing, carry the first name only,
name no diagnosis or service, and say how to stop (every one is checked by
`ensure_discreet` and fits one text)."""


class EndReason(StrEnum):
    """Why a series ended."""

    COMPLETED = "completed"
    """Every message of the schedule was sent or skipped."""
    STOPPED_BY_CLIENT = "stopped_by_client"
    """The client withdrew text consent (a STOP, a withdrawal in the directory)."""
    ATTENDED = "attended"
    """The client attended a session after the series started."""
    CLINICIAN = "clinician"
    """A clinician ended it."""


class CaringSeries(Model):
    """One client's series: the workflow's input, carried across continue-as-new."""

    series_id: str = Field(min_length=1, max_length=100)
    """`caring:<client ref>:<origin session id>`: also the workflow id and the trail id (a
    session id cannot hold ':', so no session's trail can ever take its place)."""
    client_ref: str = Field(min_length=1, max_length=64)
    """Whose series (pseudonymous)."""
    therapist_id: str = Field(min_length=1, max_length=64)
    """Who started it, and who hears of a reply."""
    origin_session_id: str = Field(min_length=1, max_length=64)
    """The session whose unresolved end it follows."""
    started_by: str = Field(min_length=1, max_length=64)
    """The clinician who confirmed it."""
    started_at: AwareDatetime
    """When the series started (the schedule's day 0)."""
    time_zone: TimeZoneName
    """The client's zone, for the contact window."""
    contact_window: ContactWindow = ContactWindow()
    """When a message may go, client's local time."""
    days: tuple[int, ...] = DEFAULT_DAYS
    """When each message is due, in days after `started_at`."""
    time_scale: float = Field(default=1, ge=1, le=86_400 * 7)
    """Divides every wait (demos and tests only), as a session's protocol does."""
    next_index: int = Field(default=0, ge=0)
    """The next message (carried across continue-as-new)."""
    next_sequence: int = Field(default=1, ge=1)
    """The trail place of the next audit event (carried across continue-as-new)."""
    sent: int = Field(default=0, ge=0)
    """Messages sent so far."""
    replies: int = Field(default=0, ge=0)
    """Replies from the client so far (each one a notice to the therapist)."""

    @field_validator("days")
    @classmethod
    def _ascending(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if not days or any(b <= a for a, b in itertools.pairwise(days)) or days[0] < 0:
            msg = "must be one or more days after the start, ascending"
            raise ValueError(msg)
        if len(days) > 60:
            msg = "at most 60 messages in a series"
            raise ValueError(msg)
        return days


def series_id(client_ref: str, origin_session_id: str) -> str:
    """The one series a session's unresolved end can start (idempotent start)."""
    return f"{SERIES_PREFIX}{client_ref}:{origin_session_id}"


def due(series: CaringSeries, index: int) -> datetime:
    """When message `index` is due (compressed by the series' time scale)."""
    return series.started_at + timedelta(days=series.days[index]) / series.time_scale


def message(index: int, first_name: str, sender: str) -> str:
    """Message `index` of a series, checked discreet and one text long."""
    text = _MESSAGES[index % len(_MESSAGES)].format(first_name=first_name, sender=sender)
    ensure_discreet(text)
    if len(text) > TEXT_LIMIT:
        msg = f"a caring message would be {len(text)} characters (limit {TEXT_LIMIT})"
        raise ValueError(msg)
    return text


def may_offer(outcome: Outcome, *, clinician_choice: bool) -> str | None:
    """Why a series may not follow a session that closed with `outcome`, or None if it may."""
    if outcome in UNRESOLVED or (clinician_choice and outcome.is_no_show):
        return None
    if not outcome.is_no_show:
        return f"the session closed {outcome.value}: the client was not missing"
    return (f"the session closed {outcome.value}; a series follows an unresolved end "
            "(unreachable) unless a clinician chooses it with --reason")


def offered(mode: CaringOffer, risk_tier: RiskTier, outcome: Outcome) -> CaringOffer | None:
    """How a session's end offers a series (None: it does not).

    Only an unresolved end (never reached) for a client at risk, and only when the practice
    asks for it (`confirm`: a task to the therapist; `automatic`: the series starts).
    """
    if mode is CaringOffer.OFF or risk_tier not in AT_RISK or outcome not in UNRESOLVED:
        return None
    return mode


def offer_task(session_id: str) -> str:
    """The therapist's task when a series waits for their acceptance."""
    return ("Caring contacts offered: the client was never reached. Accept to start the "
            f"series (starter.py caring start {session_id} --clinician <your id>), or "
            "resolve this task to decline")


REPLY_NOTICE = ("The client replied to a caring message: read the reply in the series' "
                "trail and get in touch")
"""The therapist's notice of a reply (the reply's words stay in the trail, never in a
notice that travels by text or email)."""
