"""The trail's combined writes: several rows that must be written together, in one activity."""

from __future__ import annotations

from missed_session.contracts.notices import NoticePlan
from missed_session.domain.models import (
    AuditEvent,
    AwareDatetime,
    Model,
    Outcome,
    RiskTier,
    TherapistNotice,
)
from missed_session.domain.person import LadderLookup


class ClosingRecord(Model):
    """The `closed` event and the attendance row it implies, written together."""

    event: AuditEvent
    """The `closed` audit event."""
    client_ref: str
    """Pseudonymous client id for the attendance record."""
    therapist_id: str
    """Whose session it was."""
    start: AwareDatetime
    """Start of the session, as finally scheduled."""
    outcome: Outcome
    """How the session closed."""


class NoShowRecord(Model):
    """The no-show's two events and the therapist's alert between them, written together.

    One activity rather than three: when many sessions' grace periods expire together,
    each round trip here queues beside the first calls (see docs/performance.md).
    """

    expired: AuditEvent
    """`grace_period_expired`."""
    notice: TherapistNotice
    """The therapist's no-show alert."""
    alerted: AuditEvent
    """`therapist_alerted`, naming the notice."""
    ladder: LadderLookup | None = None
    """Ask whether the person's ladder already runs: the alert then names it
    (`document_no_show`; the session's first step asks too, and its answer decides)."""
    plan_for: RiskTier | None = None
    """Plan the alert's climb too (`document_no_show`), for a session of this risk tier: the
    plan comes back with the records, saving the session a round trip (None: not asked)."""


class NoShowDocumented(Model):
    """What `document_no_show` wrote: the two events, and the alert as the inbox has it."""

    events: list[AuditEvent]
    """`grace_period_expired` and `therapist_alerted`, as recorded."""
    notice: TherapistNotice
    """The alert, its title naming the running ladder of the same person if one was found."""
    plan: NoticePlan | None = None
    """The alert's climb, when asked (`NoShowRecord.plan_for`); None without a roster."""
