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
from collections.abc import Sequence
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


def fhir_bundle(session_id: str, trail: Sequence[AuditEvent]) -> dict[str, Any]:
    """The session's trail as a FHIR R4 Bundle (plain JSON), validated before it is returned.

    Each row is read through the typed vocabulary (`events.read`), so a row that does not
    match its schema stops the export with an error naming it instead of exporting a guess.
    """
    typed = [events.read(event) for event in trail]
    appointment = _appointment(session_id, typed)
    appointment_ref = f"Appointment/{session_id}"
    scheduled = _first(typed, events.Scheduled)
    client_ref = scheduled.client_ref if scheduled else None
    therapist_id = scheduled.therapist_id if scheduled else None
    resources: list[dict[str, Any]] = [appointment]
    for event, details in zip(trail, typed, strict=True):
        resources.append(_audit_event(event, appointment_ref))
        if event.event_type.value in COMMUNICATIONS:
            resources.append(_communication(event, details, appointment_ref, client_ref))
        resources.extend(_tasks(event, details, appointment_ref, client_ref, therapist_id))
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


def validate(bundle: dict[str, Any]) -> None:
    """Raise pydantic's ValidationError unless every resource is valid FHIR."""
    # Slow to import (hundreds of models); only the export needs it.
    from fhir.resources.R4B.bundle import Bundle  # noqa: PLC0415

    Bundle.model_validate(bundle)
