"""Escalation to the emergency contact: the one decision, and what its call came to.

`next_escalation` is the only place that decides whether the emergency contact is called,
blocked, or waited for; the workflow asks it wherever the protocol may escalate (after a
failed attempt, before an attempt deferred by the contact window, when the ladder ends,
on a clinician's `escalate_now`) and acts on its answer. `emergency_call` is the only
place that reads what the call came to. `contact_to_call` is the only place that chooses
whom to call when a clinician overrides a missing consent. Pure: no I/O, no clock.

The rules, property-tested over generated event sequences (`tests/test_escalation_properties.py`):
never an escalation without consent on file covering the situation or a recorded
clinician decision; never outside the client's contact window unless the protocol allows
it for high risk or a clinician decided; never twice once the contact has been told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from missed_session.domain import clients, events, protocol
from missed_session.domain.facts import Escalation, SessionFacts, window_open, window_opens
from missed_session.domain.models import (
    CallResult,
    ClinicianDecision,
    EmergencyContact,
    RiskTier,
    SessionBooking,
)
from missed_session.domain.step_reports import (
    Done,
    Failed,
    Refused,
    StepReport,
    Stopped,
    Uncertain,
)

Basis = Literal["consent on file", "clinician decision"]
NO_CONTACT = "no emergency contact on file"


@dataclass(frozen=True)
class Escalate:
    """Call the emergency contact now."""

    basis: Basis
    """Why calling them is allowed."""
    outside_window: str | None
    """If the call goes outside the client's contact window: on whose authority."""
    consent_on_file: bool
    """Whether consent would have allowed it anyway."""


@dataclass(frozen=True)
class Block:
    """Escalation may not happen: the therapist gets an urgent task saying why."""

    reason: str


@dataclass(frozen=True)
class Wait:
    """Escalation is due and allowed, once the client's contact window opens."""

    until: datetime


EscalationDecision = Escalate | Block | Wait | None
"""None: nothing to do (not due, already considered or told, or outreach stopped)."""


def next_escalation(  # noqa: PLR0911 - one answer per rule
    facts: SessionFacts, booking: SessionBooking, now: datetime, attempt: int | None,
    override: ClinicianDecision | None, *, deferred: bool = False,
) -> EscalationDecision:
    """What to do about the emergency contact at `now`.

    `attempt`: the attempt that just failed, or None once the ladder is over. `deferred`:
    outreach is about to wait for the contact window (the attempts so far failed).
    `override`: a clinician's `escalate_now`, which must be recorded in the facts already.
    """
    contact = booking.client.emergency_contact
    in_window = window_open(booking, now)
    if override is not None:
        if facts.escalation is Escalation.SENT:
            return None
        if contact is None:
            return Block(NO_CONTACT)
        if facts.escalate_now_decisions == 0:
            return Block("the clinician's decision is not on record")
        return Escalate("clinician decision",
                        outside_window=None if in_window else "clinician decision",
                        consent_on_file=protocol.escalation_blocker(booking) is None)
    if facts.escalation is not None or facts.outreach_stops():
        return None
    if not _due(facts, booking, attempt, deferred=deferred):
        return None
    blocker = protocol.escalation_blocker(booking)
    if blocker is not None:
        return Block(blocker)
    if in_window:
        return Escalate("consent on file", outside_window=None, consent_on_file=True)
    if protocol.escalation_may_go_outside_window(booking):
        return Escalate("consent on file", outside_window="protocol allows for high risk",
                        consent_on_file=True)
    return Wait(window_opens(booking, now))


def _due(facts: SessionFacts, booking: SessionBooking, attempt: int | None, *,
         deferred: bool) -> bool:
    """Whether the protocol considers escalation at this moment."""
    if deferred:  # high risk, and the protocol says not to wait overnight to escalate
        return protocol.escalation_may_go_outside_window(booking)
    if attempt is None:  # every attempt failed
        return True
    return attempt >= protocol.escalation_after_attempt(booking) or not facts.reachable(booking)


# -- awaiting a clinician ----------------------------------------------------------------------

DECISIONS_AWAITED = "escalate_now (with a legal basis), mark_safe or stand_down"


NOT_REACHED = {"no_answer": "no answer", "failed": "the call failed"}
"""What the emergency contact's call came to when it did not reach them (escalation is then
blocked), as the wait for a clinician names it."""


def awaited(facts: SessionFacts) -> str | None:
    """What a clinician must decide before the session may close, once outreach is over.

    None when nothing is awaited: the client was reached, a clinician already ended
    outreach, the emergency contact was told, or escalation was never needed. Otherwise
    (escalation blocked, or the emergency contact's call unclear) the session waits for a
    clinician's decision (at most the protocol's `clinician_wait_hours`). A call that did
    not clearly reach the contact is named as such, so the clinician knows what to check.
    """
    if facts.outreach_stops():
        return None
    if facts.escalation is Escalation.BLOCKED and facts.contact_call in NOT_REACHED:
        return (f"a clinician's decision: {DECISIONS_AWAITED} (the emergency contact was not "
                f"reached: {NOT_REACHED[facts.contact_call]})")
    if facts.escalation is Escalation.BLOCKED:
        return f"a clinician's decision: {DECISIONS_AWAITED} (escalation is blocked)"
    if facts.escalation is Escalation.UNCERTAIN:
        return (f"a clinician's decision: {DECISIONS_AWAITED} (the emergency contact may "
                "not have been reached)")
    return None


def clinician_acted(facts: SessionFacts) -> bool:
    """Whether the wait for a clinician is over: contact made, outreach ended, contact told."""
    return facts.outreach_stops() or facts.escalation is Escalation.SENT


NOBODY_ACKNOWLEDGED = "nobody acknowledged"
"""The reason a session awaits a clinician when no person has any of its notices."""


def unacknowledged(facts: SessionFacts, booking: SessionBooking, *,
                   delivering: bool) -> str | None:
    """Why the session may not close yet although its outcome is known: nobody has it.

    A notice that ran out of steps with nobody acknowledging means no person knows; for a
    high-risk session, the outcome is final only once a clinician has acknowledged one of
    its notices (or decided on it), whatever the outcome. `delivering`: the session's
    notices climb an on-call ladder (a roster is loaded), so someone can acknowledge them;
    without one, the inbox is all there is and waiting would only delay the close. None
    once a clinician acknowledged or decided anything on the session, and None once the
    client is in touch (checked in late, or got back to us): that ends the notices' reason,
    so they resolve and everyone already told hears so (`notices.ends`): a person knows,
    and a client who is back is not kept waiting on an acknowledgment.
    """
    if facts.clinician_heard() or facts.contact_made():
        return None
    asked = f"acknowledge a notice, or decide ({DECISIONS_AWAITED}, or add what was done)"
    if facts.ran_out:
        return f"{NOBODY_ACKNOWLEDGED}: the session's notices ran out of steps; {asked}"
    if delivering and booking.risk_tier is RiskTier.HIGH:
        return (f"{NOBODY_ACKNOWLEDGED}: a high-risk session closes only once a clinician "
                f"has it; {asked}")
    return None


def climb_again_at(facts: SessionFacts, booking: SessionBooking) -> datetime | None:
    """When a fresh notice climbs the ladder again: the policy's minutes after a run-out.

    None while a person has the session, or no notice ran out since the last fresh round
    (that round is still climbing: it reports when it runs out).
    """
    if facts.clinician_heard() or facts.ran_out_at is None:
        return None
    return facts.ran_out_at + booking.protocol.scaled(facts.again_after_minutes)


# -- what the call came to --------------------------------------------------------------------


@dataclass(frozen=True)
class Told:
    """The emergency contact heard the message."""

    consent_record: str | None


@dataclass(frozen=True)
class NotTold:
    """The call did not reach them: escalation is blocked, with a task."""

    reason: str


@dataclass(frozen=True)
class MaybeTold:
    """It may have reached them: neither sent nor blocked (a later escalate_now retries)."""

    reason: str
    task: bool
    """A person must confirm (not when a clinician's own decision stopped it)."""


def emergency_call(  # noqa: PLR0911 - one answer per report
    report: StepReport, stop_reason: str,
) -> Told | NotTold | MaybeTold:
    """What the emergency contact's call came to, from its step's report."""
    match report:
        case Stopped():
            return MaybeTold(f"stopped in flight: {stop_reason}", task=False)
        case Refused(reason=reason):  # withdrawn since booking: the directory says so now
            return NotTold(reason)
        case Uncertain(reason=reason):
            return MaybeTold(reason, task=True)
        case Failed(reason=reason):
            return NotTold(f"emergency contact unreachable ({reason})")
        case Done(result=CallResult.ANSWERED_UNKNOWN):
            return MaybeTold("the provider could not tell whether a person answered", task=True)
        case Done(result=CallResult.ANSWERED, consent_record=record):
            return Told(record)
    return NotTold("emergency contact unreachable (the call was not answered)")


CallCame = Literal["answered", "no_answer", "answered_unknown", "failed", "uncertain",
                   "stopped"]


def called(report: StepReport, basis: Basis,
           stop_reason: str) -> events.EmergencyContactCalled | None:
    """What the phone said of the emergency contact's call; None if none was placed.

    A refusal (the directory's consent withdrawn) placed no call: nothing to say.
    """
    result: CallCame
    reason: str
    match report:
        case Refused():
            return None
        case Stopped():
            result, reason = "stopped", stop_reason
        case Uncertain(reason=reason):
            result = "uncertain"
        case Failed(reason=reason):
            result = "failed"
        case Done(result=CallResult.ANSWERED):
            result, reason = "answered", ""
        case Done(result=CallResult.ANSWERED_UNKNOWN):
            result, reason = "answered_unknown", ""
        case _:
            result, reason = "no_answer", ""
    return events.EmergencyContactCalled(result=result, reason=reason, basis=basis)


def sent(decision: Escalate, contact: EmergencyContact, override: ClinicianDecision | None,
         told: Told) -> events.EscalationSent:
    """The record of an emergency contact told: on consent, or on a clinician's decision."""
    if override is None:
        return events.EscalationSent(
            basis=decision.basis, consent_date=contact.consent_date,
            outside_contact_window=decision.outside_window, consent_record=told.consent_record,
        )
    return events.EscalationSent(
        basis=decision.basis, legal_basis=override.legal_basis,
        decided_by=override.clinician_id, reason=override.reason,
        consent_on_file=decision.consent_on_file, outside_contact_window=decision.outside_window,
    )


# -- whom to call ---------------------------------------------------------------------------


def contact_to_call(
    record: clients.ClientRecord, history: Sequence[clients.ConsentRecord], *, at: datetime,
    risk_tier: RiskTier, defaults: clients.ConsentDefaults, override: bool,
) -> tuple[EmergencyContact, str | None] | clients.ConsentDecision:
    """The directory's emergency contact to call at `at` and the consent record relied on.

    The first contact consent covers; without one, on a clinician's override (a recorded
    decision with a legal basis), the directory's first contact with no record relied on;
    otherwise why none may be called.
    """
    found = clients.emergency_reach(record, history, at=at, risk_tier=risk_tier,
                                    defaults=defaults)
    if isinstance(found, tuple):
        chosen, decision = found
        return EmergencyContact(name=chosen.name, phone=chosen.phone), decision.record_id
    if override and record.emergency_contacts:
        first = record.emergency_contacts[0]
        return EmergencyContact(name=first.name, phone=first.phone), None
    return found
