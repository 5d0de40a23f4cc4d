"""The console's plain words: audit events, statuses and outcomes as a clinician reads them.

Codes (`escalation_blocked`, `no-show-alert`, `via http`) stay in the trail and the exports;
the console says what they mean, and keeps the code behind a detail for whoever needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from missed_session.domain.models import AuditEvent, EventValue

STATUS = {
    "scheduled": "Booked: waiting for the start",
    "waiting": "Started: waiting for the client to check in",
    "no_show": "No-show: the client did not check in",
    "held": "Held: many sessions were missed at once; client outreach waits for a supervisor",
    "outreach": "Reaching out to the client",
    "escalation": "Contacting the emergency contact",
    "follow_up": "Planning the follow-up",
    "awaiting_clinician": "Awaiting a clinician: it closes once a person has it",
    "closed": "Closed",
    "failed": "Stopped: a person must take over",
}
"""Session statuses."""

OUTCOME = {
    "attended": "The client attended",
    "attended_late": "The client arrived late",
    "cancelled": "Cancelled",
    "reached": "The client was reached",
    "unreachable_escalated": "Unreachable: the emergency contact was contacted",
    "unreachable_escalation_blocked": "Unreachable: the emergency contact could not be "
                                      "contacted (no consent or none on file)",
    "marked_safe": "A clinician confirmed the client is safe",
    "stood_down": "A clinician stood the protocol down",
}
"""Session outcomes."""

DECISION = {
    "escalate_now": "Escalate now: call the emergency contact now, with a legal basis",
    "mark_safe": "Mark safe: you know the client is safe (e.g. they called you); "
                 "outreach stops and the session closes",
    "stand_down": "Stand down: stop outreach without confirming safety (e.g. the client "
                  "is in hospital, or the booking was wrong)",
    "add_note": "Add a note to the trail",
}
"""Decisions, with what each does (so "mark safe" and "stand down" are not confused)."""

TARGET = {"therapist": "the therapist", "on_call": "the on-call clinician",
          "supervisor": "the clinical supervisor", "exhausted": "nobody: the ladder runs out"}
VIA = {"sms": "by text reply", "link": "by the link in the message", "cli": "at the command line",
       "http": "in the console", "console": "in the console", "voice": "by phone",
       "decision": "by deciding on the session"}
CHANNEL = {"call": "call", "voicemail": "voicemail", "text": "text message", "email": "email",
           "sms": "text message", "voice": "phone call", "pager": "pager"}
CALL = {"answered": "answered", "no_answer": "no answer",
        "answered_unknown": "answered, but not clearly by the client"}
CALL_CAME = {
    "answered": "answered (the message was heard or recorded)",
    "no_answer": "no answer",
    "answered_unknown": "picked up, not clearly by a person (perhaps a voicemail greeting)",
    "failed": "the call did not go through",
    "uncertain": "not known whether the call went through",
    "stopped": "stopped before it finished",
}
"""What the emergency contact's call came to (`emergency_contact_called`)."""
NOTICE = {"no-show-alert": "No-show alert", "escalation-blocked": "Escalation blocked",
          "answer-unclear": "Unclear answer",
          "nobody-acknowledged": "Nobody acknowledged: the ladder climbs again"}


def _v(data: Mapping[str, EventValue], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def words(code: str) -> str:
    """Any code, readable: `escalate_now` -> `escalate now`."""
    return code.replace("_", " ").replace("-", " ")


def status(code: str) -> str:
    """A session status in plain words."""
    return STATUS.get(code, words(code))


def outcome(code: str) -> str:
    """A session outcome in plain words."""
    return OUTCOME.get(code, words(code))


def channel(code: str) -> str:
    """A channel in plain words."""
    return CHANNEL.get(code, words(code))


def via(code: str | None) -> str:
    """How an acknowledgment arrived, in words."""
    return VIA.get(code or "", words(code or ""))


def notice_name(key: str) -> str:
    """A notice's name from its key (`s-1/no-show-alert` -> `No-show alert`)."""
    name = key.split("/", 1)[-1]
    base, _, number = name.rpartition("-")
    if base in NOTICE and number.isdigit():  # the n-th of its kind
        return f"{NOTICE[base]} ({number})"
    return NOTICE.get(name, words(name).capitalize())


def call_came(code: str) -> str:
    """What the emergency contact's call came to, in words."""
    return CALL_CAME.get(code, words(code))


def duration(value: timedelta) -> str:
    """`1 h 5 min`, `12 min`, `under a minute`."""
    minutes = int(value.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def describe(event: AuditEvent) -> str:  # noqa: PLR0911, PLR0912 - one line per kind
    """One audit event as a sentence."""
    d, kind = event.data, event.event_type.value
    if kind == "scheduled":
        return f"Session booked with {_v(d, 'therapist_id')} ({_v(d, 'risk_tier')} risk)"
    if kind == "rescheduled":
        return "Session moved to another time"
    if kind == "cancelled":
        return "Session cancelled" + (f": {_v(d, 'reason')}" if d.get("reason") else "")
    if kind == "checked_in":
        return "Client checked in late" if d.get("late") else "Client checked in"
    if kind == "grace_period_expired":
        return (f"No check-in within the {_v(d, 'grace_period_minutes')}-minute grace "
                "period: recorded as a no-show")
    if kind == "therapist_alerted":
        return "Therapist alerted"
    if kind == "outreach_attempted":
        return (f"Called the client (attempt {_v(d, 'attempt')}): "
                f"{CALL.get(_v(d, 'result'), words(_v(d, 'result')))}")
    if kind == "voicemail_left":
        return f"Left a voicemail (attempt {_v(d, 'attempt')})"
    if kind == "message_sent":
        return f"Sent a {channel(_v(d, 'channel'))} (attempt {_v(d, 'attempt')})"
    if kind == "outreach_failed":
        return f"The {channel(_v(d, 'channel'))} failed: {_v(d, 'reason')}"
    if kind == "outreach_skipped":
        return f"No {channel(_v(d, 'channel'))}: {_v(d, 'reason')}"
    if kind == "outreach_deferred":
        return f"Waiting for the client's contact window: {_v(d, 'reason')}"
    if kind == "outreach_uncertain":
        return f"Not known whether the {channel(_v(d, 'channel'))} reached the client"
    if kind == "client_responded":
        return f"The client responded ({channel(_v(d, 'channel'))}, {_v(d, 'responder')})"
    if kind == "answer_unclear":
        return f"An answer not clearly the client's ({_v(d, 'why')}): a clinician decides"
    if kind == "opted_out":
        return f"The client opted out of {channel(_v(d, 'channel'))}s"
    if kind == "escalation_sent":
        basis = _v(d, "basis")
        return ("Called the emergency contact (consent on file)" if basis == "consent on file"
                else f"Called the emergency contact on {_v(d, 'decided_by')}'s decision "
                     f"(legal basis: {_v(d, 'legal_basis')})")
    if kind == "escalation_blocked":
        return f"Did not contact the emergency contact: {_v(d, 'reason')}"
    if kind == "escalation_uncertain":
        return "Not known whether the emergency contact was reached"
    if kind == "clinician_decision":
        decision = _v(d, "decision")
        text = f"{_v(d, 'clinician_id')} decided: {words(decision)}"
        if decision == "add_note":
            text = f"{_v(d, 'clinician_id')} added a note"
        return text + (f": {_v(d, 'reason')}" if d.get("reason") else "")
    if kind == "plan_created":
        return "Follow-up plan made"
    if kind == "closed":
        return f"Closed: {outcome(_v(d, 'outcome'))}"
    if kind == "trail_superseded":
        return "Rows of a retried step superseded"
    return _ladder_event(kind, d) or _loop_event(kind, d)


def _loop_event(kind: str, d: Mapping[str, EventValue]) -> str:  # noqa: PLR0911
    """The events of a session waiting for a person, and of the emergency contact's call."""
    if kind == "emergency_contact_called":
        return f"Called the emergency contact: {call_came(_v(d, 'result'))}"
    if kind == "awaiting_clinician":
        return f"Awaiting a clinician: {_v(d, 'awaiting')}"
    if kind == "clinician_wait_timed_out":
        return (f"Nobody decided within {_v(d, 'waited_hours')} h: closed as "
                f"{outcome(_v(d, 'outcome')).lower()}")
    if kind == "clinician_acknowledged":
        return f"Acknowledged by {_v(d, 'clinician_id')} ({notice_name(_v(d, 'notice'))})"
    if kind == "notice_ran_out":
        return (f"{notice_name(_v(d, 'notice'))} ran out of steps with nobody acknowledging: "
                f"the ladder climbs again in {_v(d, 'again_after_minutes')} min")
    if kind == "notice_renewed":
        return ("Nobody acknowledged: a fresh urgent task climbs the ladder "
                f"(round {_v(d, 'round')})")
    return _notice_event(kind, d)


def _ladder_event(kind: str, d: Mapping[str, EventValue]) -> str | None:
    """One person, one ladder: a session joined another's outreach (or was joined)."""
    if kind == "joined_outreach":
        return (f"Outreach to this client already ran for session {_v(d, 'leader')}: "
                "joined it (one ladder for both)")
    if kind == "outreach_joined":
        return f"Session {_v(d, 'joiner')} of the same client joined this outreach"
    if kind == "joined_outreach_ended":
        how = outcome(_v(d, "outcome")) if d.get("outcome") else "without word"
        then = "; this session reaches out itself" if d.get("own_ladder") else ""
        return f"The outreach of session {_v(d, 'leader')} ended ({how}){then}"
    return None


def _notice_event(kind: str, d: Mapping[str, EventValue]) -> str:  # noqa: PLR0911
    if kind == "notice_opened":
        return f"Notice opened ({_v(d, 'priority')}, policy {_v(d, 'policy')})"
    if kind == "notice_sent":
        return (f"Sent to {_v(d, 'clinician_id')} ({TARGET.get(_v(d, 'target'), '')}) by "
                f"{channel(_v(d, 'channel'))}")
    if kind == "notice_failed":
        return f"Could not reach {_v(d, 'clinician_id')} by {channel(_v(d, 'channel'))}"
    if kind == "notice_skipped":
        return f"Nobody to tell at {TARGET.get(_v(d, 'target'), '')}: {_v(d, 'reason')}"
    if kind in ("notice_climbed", "notice_escalated"):  # the old name: trails before the rename
        return f"Nobody acknowledged in time: climbs to {TARGET.get(_v(d, 'target'), '')}"
    if kind == "notice_exhausted":
        return f"Ran out of steps: nobody acknowledged ({_v(d, 'notified')} were told)"
    if kind == "notice_acknowledged":
        return (f"Acknowledged by {_v(d, 'clinician_id')} "
                f"{VIA.get(_v(d, 'via'), words(_v(d, 'via')))}")
    if kind == "notice_resolved":
        note = f" Note: {_v(d, 'note')}" if d.get("note") else ""
        return f"Resolved by {_v(d, 'clinician_id')}: {_v(d, 'outcome')}.{note}"
    if kind.startswith("brake_"):
        return _brake_event(kind, d)
    if kind == "letter_prepared":
        return (f"Prepared letter {_v(d, 'number')} ({words(_v(d, 'kind'))}) for the practice "
                "to post")
    if kind == "notice_reason_ended":
        return f"Resolved without anyone acknowledging it: {_v(d, 'reason')}"
    if kind == "notice_resolution_sent":
        return (f"Told {_v(d, 'clinician_id')} it is resolved, by {channel(_v(d, 'channel'))}"
                + ("" if d.get("result") == "sent" else f" ({_v(d, 'result')})"))
    return words(kind).capitalize()


def _brake_event(kind: str, d: Mapping[str, EventValue]) -> str:
    """The mass no-show brake's hold, release and stand-down (missed_session/domain/brake.py)."""
    if kind == "brake_held":
        return (f"Client outreach held: {_v(d, 'no_shows')} sessions missed within "
                f"{_v(d, 'window_minutes')} minutes (episode {_v(d, 'episode')})")
    if kind == "brake_released":
        return f"Hold released by {_v(d, 'by')}: {_v(d, 'reason')}"
    return f"Stood down by {_v(d, 'by')} while held: {_v(d, 'reason')}"


DID = frozenset({
    "grace_period_expired", "outreach_attempted", "voicemail_left", "message_sent",
    "outreach_failed", "outreach_skipped", "outreach_deferred", "client_responded",
    "answer_unclear", "escalation_sent", "escalation_blocked", "escalation_uncertain",
    "clinician_decision", "closed", "brake_held", "brake_released", "brake_stood_down",
    "emergency_contact_called", "awaiting_clinician", "clinician_wait_timed_out",
    "clinician_acknowledged", "notice_ran_out", "notice_renewed", "letter_prepared",
    "joined_outreach", "outreach_joined", "joined_outreach_ended",
})
"""The session events a notice card lists under "what the service did"."""


def did(trail: tuple[AuditEvent, ...]) -> list[str]:
    """What the service (and clinicians) did on the session, in order."""
    return [describe(event) for event in trail if event.event_type.value in DID]
