"""`audit export`: a session's trail as JSON lines, or as a FHIR R4 Bundle.

The FHIR Bundle (type `collection`) holds the Appointment with its status (`fulfilled`,
`cancelled`, `noshow`, or `booked` while open), an AuditEvent per audit event, a
Communication per outreach attempt and escalation (medium, status, sent, recipient), and a
Task per therapist task. The client appears only by the pseudonymous ref, as a
Patient reference by identifier; no name, phone number or email is exported. Resources are
validated with the `fhir.resources` models (its R4B package: FHIR 4.3, whose AuditEvent,
Communication, Task, Appointment and Bundle are those of R4 4.0.1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from missed_session.domain import events
from missed_session.domain.events import EventDetails
from missed_session.domain.models import AuditEvent
from missed_session.store.chain import ChainRow

Details = TypeVar("Details", bound=EventDetails)

SYSTEM = "urn:missed-session-response"
"""Identifier and code system base for the service's own identifiers and codes."""
CLIENT_SYSTEM = f"{SYSTEM}:client-ref"
THERAPIST_SYSTEM = f"{SYSTEM}:therapist-id"
EVENT_TYPE_SYSTEM = f"{SYSTEM}:audit-event-type"
TASK_SYSTEM = f"{SYSTEM}:task-kind"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"

APPOINTMENT_STATUS = {
    "attended": "fulfilled",
    "attended_late": "fulfilled",
    "cancelled": "cancelled",
}
"""Outcome -> Appointment.status; every other outcome is a no-show (`noshow`)."""
MEDIUM = {"call": ("PHONE", "telephone"), "voicemail": ("PHONE", "telephone"),
          "text": ("WRITTEN", "written"), "email": ("EMAILWRIT", "email")}
COMMUNICATIONS = {"outreach_attempted", "voicemail_left", "outreach_failed",
                  "escalation_sent", "message_sent"}
"""Audit events that are an outreach attempt (or escalation) and become a Communication."""


def jsonl(rows: Sequence[ChainRow]) -> str:
    """One JSON object per audit row, with its hashes, in order."""
    return "\n".join(
        json.dumps({
            "session_id": row.session_id,
            "sequence": row.sequence,
            "event_type": row.event_type,
            "occurred_at": row.occurred_at.astimezone(UTC).isoformat(),
            "data": dict(row.data),
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        }, sort_keys=True)
        for row in rows
    )


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _client(ref: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": CLIENT_SYSTEM, "value": ref}}


def _therapist(therapist_id: str) -> dict[str, Any]:
    return {"type": "Practitioner",
            "identifier": {"system": THERAPIST_SYSTEM, "value": therapist_id}}


def _appointment(session_id: str, trail: Sequence[EventDetails]) -> dict[str, Any]:
    scheduled = _first(trail, events.Scheduled)
    start = scheduled.start if scheduled else None
    for details in trail:
        if isinstance(details, events.Rescheduled):
            start = details.start
    closed = _first(trail, events.Closed)
    outcome = closed.outcome.value if closed else None
    status = "booked" if outcome is None else APPOINTMENT_STATUS.get(outcome, "noshow")
    participants = []
    if scheduled is not None:
        participants.append({"actor": _client(scheduled.client_ref), "status": "accepted"})
        participants.append({"actor": _therapist(scheduled.therapist_id),
                             "status": "accepted"})
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": session_id,
        "identifier": [{"system": f"{SYSTEM}:session-id", "value": session_id}],
        "status": status,
        "participant": participants or [{"status": "needs-action",
                                          "type": [{"text": "client"}]}],
    }
    if start is not None:
        appointment["start"] = _instant(start)
    if scheduled is not None:
        appointment["minutesDuration"] = scheduled.duration_minutes
    return appointment


def _first(trail: Sequence[EventDetails], kind: type[Details]) -> Details | None:
    return next((details for details in trail if isinstance(details, kind)), None)


def _audit_event(event: AuditEvent, appointment_ref: str) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "id": f"{event.session_id}-{event.sequence}",
        "type": {"system": EVENT_TYPE_SYSTEM, "code": event.event_type.value},
        "recorded": _instant(event.occurred_at),
        "outcome": "0",
        "agent": [{"who": {"display": "missed-session-response workflow"},
                   "requestor": False}],
        "source": {"observer": {"display": "missed-session-response"}},
        "entity": [{
            "what": {"reference": appointment_ref},
            "detail": [{"type": key, "valueString": json.dumps(value)}
                       for key, value in sorted(event.data.items())],
        }],
    }


def _communication(event: AuditEvent, details: EventDetails, appointment_ref: str,
                   client_ref: str | None) -> dict[str, Any]:
    channel = getattr(details, "channel", None)
    channel = str(channel) if channel is not None else (
        "voicemail" if isinstance(details, events.VoicemailLeft) else "call")
    code, display = MEDIUM.get(channel, ("PHONE", "telephone"))
    failed = isinstance(details, events.OutreachFailed)
    recipient = ({"display": "emergency contact"} if isinstance(details, events.EscalationSent)
                 else _client(client_ref) if client_ref else {"display": "client"})
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "id": f"{event.session_id}-{event.sequence}-communication",
        "status": "not-done" if failed else "completed",
        "about": [{"reference": appointment_ref}],
        "medium": [{"coding": [{"system": PARTICIPATION_MODE, "code": code,
                                "display": display}], "text": channel}],
        "recipient": [recipient],
        "sent": _instant(event.occurred_at),
    }
    if isinstance(details, events.OutreachFailed):
        communication["statusReason"] = {"text": details.reason or "failed"}
    return communication


def _tasks(event: AuditEvent, details: EventDetails, appointment_ref: str,
           client_ref: str | None, therapist_id: str | None) -> list[dict[str, Any]]:
    if isinstance(details, events.PlanCreated):
        names = [name for name in details.tasks.split(",") if name]
    elif isinstance(details, events.EscalationBlocked):
        names = ["decide_after_blocked_escalation"]
    else:
        return []
    blocked = isinstance(details, events.EscalationBlocked)
    tasks = []
    for name in names:
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": f"{event.session_id}-{event.sequence}-{name.replace('_', '-')}",
            "status": "requested",
            "intent": "order",
            "priority": "urgent" if blocked or "safety" in name
            else "routine",
            "code": {"coding": [{"system": TASK_SYSTEM, "code": name}]},
            "focus": {"reference": appointment_ref},
            "authoredOn": _instant(event.occurred_at),
        }
        if client_ref:
            task["for"] = _client(client_ref)
        if therapist_id:
            task["owner"] = _therapist(therapist_id)
        tasks.append(task)
    return tasks


def fhir_bundle(session_id: str, trail: Sequence[AuditEvent],
                notices: Mapping[str, Sequence[AuditEvent]] | None = None) -> dict[str, Any]:
    """The session's trail as a FHIR R4 Bundle (plain JSON), validated before it is returned.

    Each row is read through the typed vocabulary (`events.read`), so a row that does not
    match its schema stops the export with an error naming it instead of exporting a guess.
    `notices`: the trails of the session's notices to clinicians, by notice key (each a
    Task with its Communications, see `notice_resources`).
    """
    typed = [events.read(event) for event in trail]
    # Every row is an AuditEvent; what the session was and did comes from its course, not
    # from rows a failed workflow task left (`events.live`), which say they are superseded.
    course = {event.sequence for event in events.live(trail)}
    appointment = _appointment(session_id, [
        details for event, details in zip(trail, typed, strict=True) if event.sequence in course
    ])
    appointment_ref = f"Appointment/{session_id}"
    scheduled = _first(typed, events.Scheduled)
    client_ref = scheduled.client_ref if scheduled else None
    therapist_id = scheduled.therapist_id if scheduled else None
    resources: list[dict[str, Any]] = [appointment]
    for event, details in zip(trail, typed, strict=True):
        audit_event = _audit_event(event, appointment_ref)
        if event.sequence not in course and not isinstance(details, events.TrailSuperseded):
            audit_event["outcomeDesc"] = f"superseded: {events.SUPERSEDED_REASON}"
        resources.append(audit_event)
        if event.sequence not in course:
            continue
        if event.event_type.value in COMMUNICATIONS:
            resources.append(_communication(event, details, appointment_ref, client_ref))
        resources.extend(_tasks(event, details, appointment_ref, client_ref, therapist_id))
    for notice_trail in (notices or {}).values():
        resources.extend(notice_resources(notice_trail, appointment_ref, client_ref))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _instant(trail[-1].occurred_at) if trail else None,
        "entry": [{"fullUrl": f"{SYSTEM}:{r['resourceType']}/{r['id']}", "resource": r}
                  for r in resources],
    }
    if bundle["timestamp"] is None:
        del bundle["timestamp"]
    validate(bundle)
    return bundle


def notice_keys(trail: Sequence[AuditEvent]) -> list[str]:
    """The notices a session's trail names: each key is the stream id of the notice's trail.

    The no-show alert (`therapist_alerted`) and the escalation-blocked task.
    """
    keys: list[str] = []
    for details in (events.read(event) for event in trail):
        key = (details.notice if isinstance(details, events.TherapistAlerted)
               else details.task if isinstance(details, events.EscalationBlocked) else None)
        if key and key not in keys:
            keys.append(key)
    return keys


NOTICE_MEDIUM = {"sms": ("WRITTEN", "written"), "voice": ("PHONE", "telephone"),
                 "email": ("EMAILWRIT", "email"), "pager": ("ELECTRONIC", "electronic")}
NOTICE_TASK_STATUS = {"open": "requested", "exhausted": "requested",
                      "acknowledged": "accepted", "resolved": "completed"}
"""A notice's state -> Task.status: acknowledged is `accepted` (someone owns it), resolved
`completed`; open and exhausted are `requested`, exhausted with a businessStatus saying so."""


def notice_resources(trail: Sequence[AuditEvent], appointment_ref: str,
                     client_ref: str | None) -> list[dict[str, Any]]:
    """One notice's trail as a Task (its state) with AuditEvents and Communications.

    A Communication per message sent (or failed) to a clinician, and one per acknowledgment
    from a clinician; the Task is `requested` until acknowledged (`accepted`) or resolved
    (`completed`), with a businessStatus once the notice ran out of steps.
    """
    typed = [events.read(event) for event in trail]
    if not trail:
        return []
    key = trail[0].session_id
    task_id = key.replace("/", "-")
    task_ref = f"Task/{task_id}"
    opened = _first(typed, events.NoticeOpened)
    acknowledged = _first(typed, events.NoticeAcknowledged)
    resolved = _first(typed, events.NoticeResolved)
    ended = _first(typed, events.NoticeReasonEnded)  # resolved by its reason, not a person
    exhausted = _first(typed, events.NoticeExhausted)
    state = ("resolved" if resolved or ended else "acknowledged" if acknowledged
             else "exhausted" if exhausted else "open")
    task: dict[str, Any] = {
        "resourceType": "Task", "id": task_id,
        "identifier": [{"system": f"{SYSTEM}:notice-key", "value": key}],
        "status": NOTICE_TASK_STATUS[state], "intent": "order",
        "priority": opened.priority.value if opened else "urgent",
        "code": {"coding": [{"system": TASK_SYSTEM,
                             "code": f"notice_{opened.kind.value}" if opened else "notice"}]},
        "focus": {"reference": appointment_ref},
        "authoredOn": _instant(trail[0].occurred_at),
        "lastModified": _instant(trail[-1].occurred_at),
    }
    if exhausted:
        task["businessStatus"] = {"text": "ran out of escalation steps unacknowledged"
                                  if state == "exhausted" else
                                  "ran out of escalation steps before it was acknowledged"}
    if client_ref:
        task["for"] = _client(client_ref)
    owner = resolved or acknowledged
    if owner is not None:
        task["owner"] = _therapist(owner.clinician_id)
    if resolved:
        task["output"] = [{"type": {"text": "outcome"}, "valueString": resolved.outcome}]
    elif ended:
        task["output"] = [{"type": {"text": "outcome"}, "valueString": ended.reason}]
    resources: list[dict[str, Any]] = [task]
    for event, details in zip(trail, typed, strict=True):
        resources.append({**_audit_event(event, task_ref), "id": f"{task_id}-{event.sequence}"})
        if isinstance(details, events.NoticeSent | events.NoticeFailed):
            code, display = NOTICE_MEDIUM.get(details.channel, ("ELECTRONIC", "electronic"))
            communication: dict[str, Any] = {
                "resourceType": "Communication",
                "id": f"{task_id}-{event.sequence}-communication",
                "basedOn": [{"reference": task_ref}],
                "status": "not-done" if isinstance(details, events.NoticeFailed)
                else "completed",
                "about": [{"reference": appointment_ref}],
                "medium": [{"coding": [{"system": PARTICIPATION_MODE, "code": code,
                                        "display": display}], "text": details.channel}],
                "recipient": [_therapist(details.clinician_id)],
                "sent": _instant(event.occurred_at),
            }
            if isinstance(details, events.NoticeFailed):
                communication["statusReason"] = {"text": details.reason}
            resources.append(communication)
        elif isinstance(details, events.NoticeAcknowledged):
            resources.append({
                "resourceType": "Communication",
                "id": f"{task_id}-{event.sequence}-acknowledgment",
                "basedOn": [{"reference": task_ref}], "status": "completed",
                "about": [{"reference": appointment_ref}],
                "medium": [{"text": details.via}],
                "sender": _therapist(details.clinician_id),
                "received": _instant(event.occurred_at),
                "payload": [{"contentString": "acknowledged"}],
            })
    return resources


def validate(bundle: dict[str, Any]) -> None:
    """Raise pydantic's ValidationError unless every resource is valid FHIR."""
    # Slow to import (hundreds of models); only the export needs it.
    from fhir.resources.R4B.bundle import Bundle  # noqa: PLC0415

    Bundle.model_validate(bundle)
