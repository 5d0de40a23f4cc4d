"""Notices to clinicians: on-call ladder policies, the message, acknowledgment codes, links.

A notice (the therapist's no-show alert, the urgent "escalation blocked" task) is delivered
until a person acknowledges it: the practice's policy for its risk tier and priority names
who is notified in turn (the session's therapist, the on-call clinician, the clinical
supervisor) and how long each has before the next is woken, and whether the ladder repeats.
Everything here is pure; `workflows/notice.py` walks the ladder.

Acknowledging needs proof of who answers: a short code sent to each notified clinician (its
SHA-256 is what is stored outside the notice's own history), the clinician's own number for
an SMS reply, or a link signed with the practice's secret (HMAC-SHA256).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from missed_session.domain import events
from missed_session.domain.models import (
    AwareDatetime,
    CallResult,
    DecisionKind,
    Model,
    NoticeKind,
    Outcome,
    Priority,
    RiskTier,
)
from missed_session.domain.roster import NoticeRoute

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""No 0/O or 1/I: a code read off a lock screen is typed back right."""
CODE_LENGTH = 6
SMS_ACK = re.compile(r"^\s*(?:1|ack(?:\s+(?P<code>[A-Za-z0-9]{4,12}))?)\s*$", re.IGNORECASE)
"""`1`, `ACK` or `ACK <code>`: an acknowledgment by SMS reply."""


class Target(StrEnum):
    """Who a step of the ladder notifies."""

    THERAPIST = "therapist"
    ON_CALL = "on_call"
    SUPERVISOR = "supervisor"


class Then(StrEnum):
    """What happens when the last step's time is up and nobody acknowledged."""

    STOP = "stop"
    REPEAT = "repeat"


class Step(Model):
    """One rung: notify `notify`, then wait `minutes` for an acknowledgment."""

    notify: Target
    """Who is notified."""
    minutes: int = Field(ge=1, le=1440)
    """How long they have before the next rung (real minutes; `time_scale` compresses)."""


class Policy(Model):
    """A notice policy (its on-call ladder) and the notices it is for (first match wins)."""

    name: str = Field(min_length=1, max_length=40)
    """Named in the audit trail."""
    priority: Priority | None = None
    """Only notices of this priority; none: any."""
    risk_tiers: tuple[RiskTier, ...] = ()
    """Only sessions of these risk tiers; empty: any."""
    steps: tuple[Step, ...] = Field(min_length=1, max_length=10)
    """The ladder."""
    then: Then = Then.STOP
    """After the last step: stop (the notice ran out of steps) or climb again."""
    repeats: int = Field(default=0, ge=0, le=5)
    """With `repeat`: how many more times the whole ladder is climbed."""

    @model_validator(mode="after")
    def _repeat_is_bounded(self) -> Policy:
        if self.then is Then.REPEAT and self.repeats == 0:
            msg = "then = 'repeat' needs repeats (1-5): a ladder that never ends is silence too"
            raise ValueError(msg)
        return self

    def matches(self, priority: Priority, risk_tier: RiskTier) -> bool:
        """Whether this policy is for a notice of `priority` about a `risk_tier` session."""
        return ((self.priority is None or self.priority is priority)
                and (not self.risk_tiers or risk_tier in self.risk_tiers))

    @property
    def rounds(self) -> int:
        """How many times the ladder is climbed."""
        return 1 + (self.repeats if self.then is Then.REPEAT else 0)


DEFAULT_POLICIES = (
    Policy(name="high-risk", risk_tiers=(RiskTier.HIGH,), steps=(
        Step(notify=Target.THERAPIST, minutes=5), Step(notify=Target.ON_CALL, minutes=5),
        Step(notify=Target.SUPERVISOR, minutes=10))),
    Policy(name="urgent", priority=Priority.URGENT, steps=(
        Step(notify=Target.THERAPIST, minutes=10), Step(notify=Target.ON_CALL, minutes=10),
        Step(notify=Target.SUPERVISOR, minutes=15))),
    Policy(name="routine", steps=(
        Step(notify=Target.THERAPIST, minutes=30), Step(notify=Target.ON_CALL, minutes=30),
        Step(notify=Target.SUPERVISOR, minutes=30))),
)
"""Without a practice's own: the critical-results pattern (page, wait minutes, cover)."""


class NoticeSettings(Model):
    """The practice's notice rules (`[notices]` in the practice file)."""

    include_first_name: bool = False
    """Whether messages to clinicians may carry the client's first name (else the ref only)."""
    ack_code_hours: int = Field(default=24, ge=1, le=168)
    """How long an acknowledgment code (and a signed link) stays valid after it is sent."""
    policies: tuple[Policy, ...] = DEFAULT_POLICIES
    """In order; the last must match every notice."""

    @model_validator(mode="after")
    def _has_fallback(self) -> NoticeSettings:
        if not self.policies:
            msg = "policies: at least one policy is required"
            raise ValueError(msg)
        last = self.policies[-1]
        if last.priority is not None or last.risk_tiers:
            msg = (f"policies: the last policy ({last.name}) must match every notice "
                   "(no priority, no risk_tiers), so that no notice is left without one")
            raise ValueError(msg)
        return self

    def policy_for(self, priority: Priority, risk_tier: RiskTier) -> Policy:
        """The first policy matching the notice."""
        return next(p for p in self.policies if p.matches(priority, risk_tier))


def asked(kind: NoticeKind) -> str:
    """What the clinician is asked to do, by kind of notice."""
    if kind is NoticeKind.TASK:
        return "act on it now, then resolve it with the outcome"
    return "acknowledge that you have seen it"


def message(*, priority: Priority, risk_tier: RiskTier, title: str, kind: NoticeKind,
            code: str, first_name: str | None, link: str | None) -> str:
    """The notice as a clinician reads it: enough to act, nothing more.

    The title names the client by ref; the first name only when the practice allows it
    (`first_name` is None otherwise). Never the client's phone, email or notes.
    """
    who = f" Client first name: {first_name}." if first_name else ""
    text = (f"{priority.value.upper()} ({risk_tier.value} risk): {title}.{who} "
            f"Please {asked(kind)}. Reply 1 or ACK {code} to acknowledge.")
    if link:
        text += f" Or open {link}"
    return text


SMS_LIMIT = 160
"""A text channel takes one segment (`channels.base.TextProvider`): the SMS form fits it."""


def sms(*, priority: Priority, risk_tier: RiskTier, title: str, kind: NoticeKind,
        code: str, client_ref: str, first_name: str | None) -> str:
    """The notice in one text of at most 160 characters: who, what, the code.

    What happened is shortened (never the client ref or the code) when it does not fit; the
    signed link, which would not, goes in the email.
    """
    what = title.removesuffix(f" (client {client_ref})").rstrip(".")
    who = f"client {client_ref}" + (f" ({first_name})" if first_name else "")
    ask = " Act, then resolve." if kind is NoticeKind.TASK else ""
    head = f"{priority.value.upper()} {risk_tier.value} risk, {who}: "
    tail = f".{ask} Reply 1 or ACK {code}"
    room = SMS_LIMIT - len(head) - len(tail)
    if len(what) > room:
        what = what[:max(room - 3, 0)].rstrip() + "..."
    return f"{head}{what}{tail}"[:SMS_LIMIT]


def new_code(rng: random.Random) -> str:
    """A fresh acknowledgment code (from the workflow's deterministic random)."""
    return "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def code_hash(code: str) -> str:
    """What is stored and compared: a code's SHA-256, of its upper-case form."""
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def parse_sms(body: str) -> tuple[bool, str | None]:
    """(whether `body` is an acknowledgment, the code it names if any)."""
    match = SMS_ACK.fullmatch(body)
    if match is None:
        return False, None
    code = match.group("code")
    return True, code.upper() if code else None


class AckVia(StrEnum):
    """How an acknowledgment or resolution arrived."""

    SMS = "sms"
    LINK = "link"
    CLI = "cli"
    HTTP = "http"
    CONSOLE = "console"
    """The clinician console (signed in): not the HTTP API's bearer tokens."""
    DECISION = "decision"
    """A decision the clinician took on the notice's session (from any entry point)."""


class IssuedCode(Model):
    """A code sent to one clinician for one notice."""

    clinician_id: str
    """Who it was sent to."""
    code_hash: str
    """SHA-256 of the code."""
    number: str | None
    """The clinician's SMS number, which an SMS acknowledgment must come from."""
    issued_at: AwareDatetime
    """When it was first sent."""
    expires_at: AwareDatetime
    """When it stops working."""


class Acknowledgment(Model):
    """Someone acknowledges a notice (the input of the `acknowledge` update)."""

    via: AckVia
    """How it arrived."""
    code: str | None = Field(default=None, max_length=16)
    """The code the clinician was sent (an SMS `1` and the CLI may name the clinician
    instead)."""
    clinician_id: str | None = Field(default=None, max_length=64)
    """Who acknowledges, when known (CLI, signed link, matched SMS number)."""
    from_number: str | None = Field(default=None, max_length=20)
    """The number an SMS reply came from."""


class Resolution(Model):
    """A clinician closes the notice with an outcome (the `resolve` update's input)."""

    clinician_id: str = Field(min_length=1, max_length=64)
    """Who resolves it."""
    outcome: str = Field(min_length=1, max_length=80)
    """What was done, briefly (e.g. `client reached by therapist`)."""
    note: str = Field(default="", max_length=500)
    """Optional note: health data, kept in the audit trail, never logged."""
    via: AckVia = AckVia.CLI
    """How it arrived."""


def ack_problem(issued: Mapping[str, IssuedCode], ack: Acknowledgment, *, now: datetime,
                acknowledged_by: str | None, resolved: bool) -> tuple[str | None, str | None]:
    """(why the acknowledgment is refused, or None; the clinician it is from).

    Accepted: a code this notice sent, unexpired, from the clinician it was sent to (an SMS
    from their number); or, without a code, a clinician this notice notified (an SMS `1`
    from their number, the operator's CLI naming them).
    """
    if resolved:
        return "the notice is already resolved", None
    if acknowledged_by is not None:
        return f"the notice was already acknowledged by {acknowledged_by}", None
    problem, issued_to = _issued_to(issued, ack, now)
    if issued_to is None:
        return problem, None
    if ack.via is AckVia.SMS and (ack.from_number is None or ack.from_number != issued_to.number):
        return "the reply did not come from the notified clinician's number", None
    return None, issued_to.clinician_id


def _issued_to(issued: Mapping[str, IssuedCode], ack: Acknowledgment,
               now: datetime) -> tuple[str | None, IssuedCode | None]:
    """The code (by the code given, or by the clinician named) or why none applies."""
    if ack.code is None:
        if ack.clinician_id is None:
            return "a code or the clinician is required", None
        found = issued.get(ack.clinician_id)
        unknown = f"{ack.clinician_id} was not notified of this notice"
    else:
        digest = code_hash(ack.code)
        found = next((c for c in issued.values()
                      if hmac.compare_digest(c.code_hash, digest)), None)
        unknown = "unknown code"
        if found is not None and ack.clinician_id not in {None, found.clinician_id}:
            return f"the code was not sent to {ack.clinician_id}", None
    if found is None:
        return unknown, None
    if now >= found.expires_at:
        return f"the code expired at {found.expires_at:%Y-%m-%d %H:%M} UTC", None
    return None, found


def code_expiry(issued_at: datetime, settings: NoticeSettings) -> datetime:
    """When a code sent at `issued_at` stops working."""
    return issued_at + timedelta(hours=settings.ack_code_hours)


def link_signature(secret: bytes, notice_key: str, clinician_id: str, expires: int) -> str:
    """HMAC-SHA256 over what a link acknowledges: the notice, the clinician, the expiry."""
    payload = f"v1|{notice_key}|{clinician_id}|{expires}".encode()
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def link_problem(secret: bytes, notice_key: str, clinician_id: str, expires: int,
                 signature: str, *, now: datetime) -> str | None:
    """Why a signed link is refused, or None."""
    expected = link_signature(secret, notice_key, clinician_id, expires)
    if not hmac.compare_digest(expected, signature):
        return "the link's signature does not match"
    if now.timestamp() >= expires:
        return "the link has expired"
    return None


# -- notices that track their reason ---------------------------------------------------------


class EndReason(StrEnum):
    """Why the session's reason for its notices ended; the words a "resolved" message uses.

    Only the client's contact and a clinician's ending decision (and a cancellation, before
    any outreach) end a reason: the session closing on its own (unreachable, escalated or
    not) ends none, because then a person still has to see what the notice says.
    """

    CHECKED_IN_LATE = "the client checked in late"
    REACHED = "the client was reached"
    MARKED_SAFE = "a clinician marked the client safe"
    STOOD_DOWN = "a clinician stood outreach down"
    CANCELLED = "the session was cancelled"


CLIENT_CONTACT = frozenset({EndReason.CHECKED_IN_LATE, EndReason.REACHED})
"""The client is in touch again."""
CLINICIAN_DECISION = frozenset({EndReason.MARKED_SAFE, EndReason.STOOD_DOWN})
"""A clinician decided how the session ends."""

NOTICE_ENDS: Mapping[str, frozenset[EndReason]] = {
    # The alert says the client did not come and outreach is under way: any end of that.
    "no-show-alert": frozenset(EndReason),
    # "Escalation blocked: decide": the client's contact or the clinician's decision
    # answers it; a cancellation (a scheduler's word, not a person's) does not.
    "escalation-blocked": CLIENT_CONTACT | CLINICIAN_DECISION,
    # "Confirm who answered": the client's own contact, or a decision, settles it.
    "answer-unclear": CLIENT_CONTACT | CLINICIAN_DECISION,
    # "The emergency contact may have been reached": someone may be worried about the client
    # whatever the client did since; only a clinician's decision closes that loop.
    "escalation-uncertain": CLINICIAN_DECISION,
    # Not here, so ended by no reason: `emergency-contact-called` (the therapist must learn
    # the contact was called, and may owe them a call back, whatever came after) and
    # `trail-refused` (a person takes over the protocol), and any notice not listed.
}
"""Which reasons end which notice (by name, without its number)."""

_NUMBERED = re.compile(r"^(?P<name>.+?)-\d+$")


def notice_name(notice_key: str) -> str:
    """A notice's name without its session or number: `s-1/answer-unclear-2` is `answer-unclear`."""
    name = notice_key.rsplit("/", 1)[-1]
    if name in NOTICE_ENDS:
        return name
    match = _NUMBERED.fullmatch(name)
    return match.group("name") if match is not None else name


def ends(notice_key: str, reason: EndReason) -> bool:
    """Whether `reason` ends the notice `notice_key` (one not named here never ends so)."""
    return reason in NOTICE_ENDS.get(notice_name(notice_key), frozenset())


def end_reason(outcome: Outcome) -> EndReason | None:
    """The reason that ended with the session's outreach, if any did.

    None when the session ends without the client's contact or a clinician's decision
    (attended on time: no notice exists yet; unreachable: the notices still stand).
    """
    return _END_REASONS.get(outcome)


_END_REASONS: Mapping[Outcome, EndReason] = {
    Outcome.ATTENDED_LATE: EndReason.CHECKED_IN_LATE,
    Outcome.REACHED: EndReason.REACHED,
    Outcome.MARKED_SAFE: EndReason.MARKED_SAFE,
    Outcome.STOOD_DOWN: EndReason.STOOD_DOWN,
    Outcome.CANCELLED: EndReason.CANCELLED,
}


def decision_reason(kind: DecisionKind) -> EndReason | None:
    """The reason a clinician's decision ends (mark safe, stand down), if it ends one."""
    return {DecisionKind.MARK_SAFE: EndReason.MARKED_SAFE,
            DecisionKind.STAND_DOWN: EndReason.STOOD_DOWN}.get(kind)


class ReasonEnded(Model):
    """The session's reason for a notice ended (the notice workflow's `reason_ended` signal)."""

    reason: EndReason
    """What ended it; the notice decides (`ends`) whether that ends it."""


def named_notice(details: events.EventDetails) -> str | None:
    """The notice key a session event names: the trail says which notices the session gave."""
    match details:
        case events.TherapistAlerted(notice=key):
            return key
        case (events.EscalationBlocked(task=key) | events.EscalationUncertain(task=key)
              | events.AnswerUnclear(task=key)):
            return key
    return None


def to_tell(told: Sequence[tuple[str, NoticeRoute]]) -> tuple[tuple[str, NoticeRoute], ...]:
    """Whom a notice resolved by its reason tells, and how.

    Each person once, on the first route the ladder told them on (`told`, in order: sent,
    or possibly delivered): one "resolved" per person per notice, however many routes.
    """
    seen: dict[str, NoticeRoute] = {}
    for clinician, route in told:
        seen.setdefault(clinician, route)
    return tuple(seen.items())


def resolved_text(*, title: str, client_ref: str, reason: EndReason) -> str:
    """The one short message to someone already told: what ended, and why, in one text.

    No more than the notice itself said (its title names the client by ref only), shortened
    (never the client ref or the reason) to one SMS segment.
    """
    what = title.removesuffix(f" (client {client_ref})").rstrip(".")
    head = f"RESOLVED, client {client_ref}: "
    tail = f" - {reason.value}. No need to acknowledge."
    room = SMS_LIMIT - len(head) - len(tail)
    if len(what) > room:
        what = what[:max(room - 3, 0)].rstrip() + "..."
    return f"{head}{what}{tail}"[:SMS_LIMIT]


def no_show_title(*, now: datetime, opens: datetime, time_zone: str,
                  emergency_call: bool) -> str:
    """The no-show alert's words, as things stand when it is sent.

    `opens`: when the client's contact window opens (`now` if open); `emergency_call`: the
    emergency contact is about to be called (high risk, allowed outside the window).
    """
    if opens <= now:
        head = "No-show: outreach to the client has started"
    else:  # the window opens within a day: the time in the client's zone is unambiguous
        local = opens.astimezone(ZoneInfo(time_zone))
        head = f"No-show: outreach deferred until {local:%H:%M} {time_zone}"
    if emergency_call:
        head += "; calling the emergency contact now"
    return head


class CallOutcome(StrEnum):
    """What the emergency contact's call came to, as the therapist's notice says it."""

    ANSWERED = "answered"
    NO_ANSWER = "no answer"
    FAILED = "failed"
    NOT_KNOWN = "not known whether it reached them"


_UNREACHABLE = "emergency contact unreachable"
_NOT_ANSWERED = f"{_UNREACHABLE} (the call was not answered)"


def emergency_call_outcome(details: events.EventDetails) -> CallOutcome | None:
    """What an event says the emergency contact's call came to; None: no call.

    `emergency_contact_called` says it as the phone did. Sessions recorded before it have
    only the escalation events: a `result` the event records (`answered`, `no_answer`) is
    taken as it is; without one, the event's kind and reason say it (`escalation_sent`:
    answered; blocked as unreachable: no answer or failed; uncertain: not known). Blocked for
    any other reason (no consent, no contact): nobody was called.
    """
    if isinstance(details, events.EmergencyContactCalled):  # what the phone itself said
        return _PHONE_SAID[details.result]
    return _escalation_said(details)


def _escalation_said(details: events.EventDetails) -> CallOutcome | None:
    recorded = getattr(details, "result", None)
    if isinstance(details, events.EscalationSent | events.EscalationBlocked
                  | events.EscalationUncertain) and recorded is not None:
        return _RECORDED.get(str(recorded), CallOutcome.NOT_KNOWN)
    match details:
        case events.EscalationSent():
            return CallOutcome.ANSWERED
        case events.EscalationUncertain():
            return CallOutcome.NOT_KNOWN
        case events.EscalationBlocked(reason=reason) if reason == _NOT_ANSWERED:
            return CallOutcome.NO_ANSWER
        case events.EscalationBlocked(reason=reason) if reason.startswith(_UNREACHABLE):
            return CallOutcome.FAILED
    return None


_PHONE_SAID: Mapping[str, CallOutcome] = {
    "answered": CallOutcome.ANSWERED, "no_answer": CallOutcome.NO_ANSWER,
    "answered_unknown": CallOutcome.NOT_KNOWN, "failed": CallOutcome.FAILED,
    "uncertain": CallOutcome.NOT_KNOWN, "stopped": CallOutcome.NOT_KNOWN,
}
"""`emergency_contact_called`'s results (recorded before what escalation made of them)."""

_RECORDED: Mapping[str, CallOutcome] = {
    CallResult.ANSWERED.value: CallOutcome.ANSWERED,
    CallResult.NO_ANSWER.value: CallOutcome.NO_ANSWER,
    "failed": CallOutcome.FAILED,
    CallResult.ANSWERED_UNKNOWN.value: CallOutcome.NOT_KNOWN,
}


def tells_therapist_of_call(therapist_id: str, decided_by: str | None) -> bool:
    """Whether the therapist gets a notice of the emergency contact's call.

    Always, unless the therapist decided the call themselves (`escalate_now`): their
    decision's answer already says what came of it, and a notice of it would climb to the
    on-call clinician for nothing.
    """
    return decided_by != therapist_id


def emergency_call_title(outcome: CallOutcome) -> str:
    """The therapist's notice that the emergency contact was called, with what came of it."""
    return f"The emergency contact was called: {outcome.value}"
