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
from typing import Any

from missed_session.domain.models import AuditEvent
from missed_session.store.chain import ChainRow

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


def _appointment(session_id: str, trail: Sequence[AuditEvent]) -> dict[str, Any]:
    scheduled = next((event for event in trail if event.event_type.value == "scheduled"), None)
    data = scheduled.data if scheduled else {}
    start = str(data.get("start") or "")
    for event in trail:
        if event.event_type.value == "rescheduled" and event.data.get("start"):
            start = str(event.data["start"])
    closed = next((event for event in trail if event.event_type.value == "closed"), None)
    outcome = str(closed.data.get("outcome")) if closed else None
    status = "booked" if outcome is None else APPOINTMENT_STATUS.get(outcome, "noshow")
    participants = []
    if data.get("client_ref"):
        participants.append({"actor": _client(str(data["client_ref"])), "status": "accepted"})
    if data.get("therapist_id"):
        participants.append({"actor": _therapist(str(data["therapist_id"])),
                             "status": "accepted"})
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": session_id,
        "identifier": [{"system": f"{SYSTEM}:session-id", "value": session_id}],
        "status": status,
        "participant": participants or [{"status": "needs-action",
                                          "type": [{"text": "client"}]}],
    }
    if start:
        appointment["start"] = _instant(datetime.fromisoformat(start))
    if isinstance(data.get("duration_minutes"), int):
        appointment["minutesDuration"] = data["duration_minutes"]
    return appointment


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


def _communication(event: AuditEvent, appointment_ref: str,
                   client_ref: str | None) -> dict[str, Any]:
    kind = event.event_type.value
    channel = str(event.data.get("channel") or ("voicemail" if kind == "voicemail_left"
                                                 else "call"))
    code, display = MEDIUM.get(channel, ("PHONE", "telephone"))
    failed = kind == "outreach_failed"
    recipient = ({"display": "emergency contact"} if kind == "escalation_sent"
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
    if failed:
        communication["statusReason"] = {"text": str(event.data.get("reason") or "failed")}
    return communication


def _tasks(event: AuditEvent, appointment_ref: str, client_ref: str | None,
           therapist_id: str | None) -> list[dict[str, Any]]:
    kind = event.event_type.value
    if kind == "plan_created":
        names = [name for name in str(event.data.get("tasks") or "").split(",") if name]
    elif kind == "escalation_blocked":
        names = ["decide_after_blocked_escalation"]
    else:
        return []
    tasks = []
    for name in names:
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": f"{event.session_id}-{event.sequence}-{name.replace('_', '-')}",
            "status": "requested",
            "intent": "order",
            "priority": "urgent" if kind == "escalation_blocked" or "safety" in name
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
    """The session's trail as a FHIR R4 Bundle (plain JSON), validated before it is returned."""
    appointment = _appointment(session_id, trail)
    appointment_ref = f"Appointment/{session_id}"
    scheduled = next((event for event in trail if event.event_type.value == "scheduled"), None)
    client_ref = str(scheduled.data["client_ref"]) if scheduled and scheduled.data.get(
        "client_ref") else None
    therapist_id = str(scheduled.data["therapist_id"]) if scheduled and scheduled.data.get(
        "therapist_id") else None
    resources: list[dict[str, Any]] = [appointment]
    for event in trail:
        resources.append(_audit_event(event, appointment_ref))
        if event.event_type.value in COMMUNICATIONS:
            resources.append(_communication(event, appointment_ref, client_ref))
        resources.extend(_tasks(event, appointment_ref, client_ref, therapist_id))
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
