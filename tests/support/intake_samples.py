"""Realistic scheduler messages for the intake tests, shaped after published examples.

- FHIR: the R4 specification's appointment-example.json (status, serviceCategory,
  appointmentType, participants Patient/Practitioner/Location), with the Patient contained
  so the message carries a phone number; notifications after the Subscriptions R5
  Backport IG's examples (R4 `Parameters` status, R4B `SubscriptionStatus`).
- HL7 v2: the widely copied SIU^S12 v2.3 sample (MESA_OP/XYZ_HOSPITAL, SCH-11 timing) and
  the S14 "ARRIVED" sample; a v2.5 variant with TQ1.
- Cal.com: the webhook payload as Cal.com documents it (triggerEvent, createdAt, payload
  with uid, startTime, organizer, attendees, responses, rescheduleUid; no-show payloads
  with bookingUid and attendees[].noShow).
- Calendly: API v2 webhook payloads (event, created_at, payload invitee with uri,
  scheduled_event, text_reminder_number, old_invitee/new_invitee, rescheduled).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

PRACTITIONER = "Practitioner/t-ana"


def fhir_appointment(appointment_id: str, status: str, start: datetime, *,
                     version: str | None = None, updated: datetime | None = None,
                     phone: str | None = "(415) 555-0123", contained: bool = True
                     ) -> dict[str, Any]:
    """An R4 Appointment like the specification's example, with a contained Patient."""
    patient_reference = "#pat" if contained else "Patient/example"
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "status": status,
        "serviceCategory": [{"coding": [{"system": "http://example.org/service-category",
                                         "code": "gp", "display": "General Practice"}]}],
        "appointmentType": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0276",
            "code": "FOLLOWUP", "display": "A follow up visit from a previous appointment"}]},
        "priority": 5,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=50)).isoformat(),
        "minutesDuration": 50,
        "created": "2026-10-10",
        "participant": [
            {"actor": {"reference": patient_reference, "display": "Peter James Chalmers"},
             "required": "required", "status": "accepted"},
            {"type": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "ATND"}]}],
             "actor": {"reference": PRACTITIONER, "display": "Dr Adam Careful"},
             "required": "required", "status": "accepted"},
            {"actor": {"reference": "Location/1", "display": "South Wing, second floor"},
             "required": "required", "status": "accepted"},
        ],
    }
    if contained:
        telecom = [{"system": "phone", "value": phone, "use": "mobile"}] if phone else []
        resource["contained"] = [{
            "resourceType": "Patient", "id": "pat",
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
            "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
            "telecom": telecom,
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone",
                           "valueCode": "America/Los_Angeles"}],
        }]
    if status == "cancelled":
        resource["cancelationReason"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
            "code": "pat", "display": "Patient"}]}
    if version or updated:
        resource["meta"] = {k: v for k, v in (
            ("versionId", version), ("lastUpdated", updated.isoformat() if updated else None))
            if v}
    return resource


def r4_notification(subscription: str, number: int, appointment: dict[str, Any] | None,
                    focus: str, kind: str = "event-notification") -> dict[str, Any]:
    """An R4 backport notification (Parameters status); `appointment` None: id-only."""
    status: dict[str, Any] = {
        "resourceType": "Parameters",
        "meta": {"profile": [
            "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
            "backport-subscription-status-r4"]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": subscription}},
            {"name": "topic", "valueCanonical": "http://example.org/SubscriptionTopic/appt"},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": kind},
            {"name": "events-since-subscription-start", "valueString": str(number)},
        ],
    }
    if kind == "event-notification":
        status["parameter"].append({"name": "notification-event", "part": [
            {"name": "event-number", "valueString": str(number)},
            {"name": "timestamp", "valueInstant": datetime.now(UTC).isoformat()},
            {"name": "focus", "valueReference": {"reference": focus}},
        ]})
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": status,
        "request": {"method": "GET", "url": f"{subscription}/$status"},
        "response": {"status": "200"}}]
    if kind == "event-notification":
        entry: dict[str, Any] = {"fullUrl": focus, "request": {"method": "PUT", "url": focus},
                                 "response": {"status": "200"}}
        if appointment is not None:
            entry["resource"] = appointment
        entries.append(entry)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "history",
            "timestamp": datetime.now(UTC).isoformat(), "entry": entries}


def r4b_notification(subscription: str, number: int, focus: str | None,
                     appointment: dict[str, Any] | None = None,
                     kind: str = "event-notification") -> dict[str, Any]:
    """An R4B notification (SubscriptionStatus) that mixes in R5 spellings (integer event
    numbers, Bundle type subscription-notification), as some vendors send."""
    status: dict[str, Any] = {
        "resourceType": "SubscriptionStatus", "status": "active", "type": kind,
        "eventsSinceSubscriptionStart": number,
        "subscription": {"reference": subscription},
        "topic": "http://example.org/SubscriptionTopic/appt",
    }
    entries: list[dict[str, Any]] = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                                      "resource": status}]
    if kind == "event-notification" and focus is not None:
        status["notificationEvent"] = [{"eventNumber": number,
                                        "timestamp": datetime.now(UTC).isoformat(),
                                        "focus": {"reference": focus}}]
        entry: dict[str, Any] = {"fullUrl": focus}
        if appointment is not None:
            entry["resource"] = appointment
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "subscription-notification", "entry": entries}


def hl7_time(value: datetime) -> str:
    """YYYYMMDDHHMMSS+ZZZZ, keeping the value's own offset."""
    return value.strftime("%Y%m%d%H%M%S%z")


def siu(trigger: str, control_id: str, appointment_id: str, start: datetime, *,
        version: str = "2.3", tq1: bool = False, filler_status: str = "Booked",
        sent: datetime | None = None, phone: str = "(415)555-0123", ack: str = "",
        separator: str = "\r", segments: tuple[str, ...] | None = None) -> str:
    """An SIU message after the common v2.3 sample; `tq1` adds a v2.5 TQ1 timing segment."""
    sent_at = hl7_time(sent or datetime.now(UTC))
    end = start + timedelta(minutes=50)
    msh = (f"MSH|^~\\&|MESA_OP|XYZ_HOSPITAL|iFW|ABC_HOSPITAL|{sent_at}||SIU^{trigger}|"
           f"{control_id}|P|{version}|||{ack}|{ack}")
    timing = "" if tq1 else f"^^50^{hl7_time(start)}^{hl7_time(end)}"
    sch = (f"SCH|{appointment_id}^{appointment_id}|{appointment_id}^{appointment_id}|||"
           f"{appointment_id}|OFFICE^Office visit|reason for the appointment|OFFICE|50|m|"
           f"{timing}|||||9^DENT^ARTHUR^||||9^DENT^COREY^|||||{filler_status}")
    pid = (f"PID|1||42^^^MRN||SMITH^PAUL||19781012|M|||1 Broadway Ave^^Fort Wayne^IN^46804"
           f"||{phone}|||S||999999999")
    parts = [msh, sch]
    if tq1:
        parts.append(f"TQ1|1|||||50^min|{hl7_time(start)}|{hl7_time(end)}")
    parts += [pid, "PV1|1|O|||||1^Smith^Miranda^A^MD", "RGS|1|A",
              f"AIP|1|A|t-ana^White^Charles^A^MD|D^White, Douglas||{hl7_time(start)}|||50|"
              "m^Minutes||Scheduled"]
    if segments is not None:
        parts = [part for part in parts if part[:3] in segments]
    return separator.join(parts) + separator


def calcom(trigger: str, uid: str, start: datetime, *, created: datetime | None = None,
           reschedule_uid: str | None = None, phone: str | None = "+14155550123",
           **extra: Any) -> bytes:
    """A Cal.com webhook body."""
    payload: dict[str, Any]
    if trigger in {"BOOKING_NO_SHOW_UPDATED"}:
        payload = {"message": "x_marked_as_no_show", "bookingUid": uid, "bookingId": 91,
                   "attendees": [{"email": "sam@example.com", "noShow": True}], **extra}
    elif trigger in {"AFTER_GUESTS_CAL_VIDEO_NO_SHOW", "AFTER_HOSTS_CAL_VIDEO_NO_SHOW"}:
        payload = {"title": "50 min session", "bookingId": 91, "bookingUid": uid,
                   "startTime": start.isoformat(), "endTime": (start + timedelta(minutes=50)
                                                              ).isoformat(),
                   "attendees": [{"email": "sam@example.com", "name": "Sam Lee"}],
                   "participants": [],
                   "message": "Guest didn't join the call or didn't join before ...", **extra}
    else:
        attendee: dict[str, Any] = {"name": "Sam Lee", "firstName": "Sam", "lastName": "Lee",
                                    "email": "sam@example.com",
                                    "timeZone": "America/Chicago",
                                    "language": {"locale": "en"}, "utcOffset": -360}
        if phone:
            attendee["phoneNumber"] = phone
        payload = {
            "type": "50min", "title": "50 min session between Ana Rivera and Sam Lee",
            "description": "", "additionalNotes": "",
            "startTime": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "endTime": (start + timedelta(minutes=50)).astimezone(UTC).isoformat()
            .replace("+00:00", "Z"),
            "organizer": {"id": 7, "name": "Ana Rivera", "email": "ana@practice.example",
                          "username": "t-ana", "timeZone": "America/New_York",
                          "language": {"locale": "en"}, "timeFormat": "h:mma",
                          "utcOffset": -300},
            "attendees": [attendee],
            "responses": {"name": {"label": "your_name", "value": "Sam Lee"},
                          "email": {"label": "email_address", "value": "sam@example.com"},
                          "location": {"label": "location",
                                       "value": {"optionValue": "", "value": "inPerson"}}},
            "location": "inPerson", "uid": uid, "bookingId": 91, "status": "ACCEPTED",
            "length": 50, "eventTypeId": 3, "metadata": {},
            **extra,
        }
        if reschedule_uid:
            payload["rescheduleUid"] = reschedule_uid
            payload["rescheduleStartTime"] = start.isoformat()
        if trigger == "BOOKING_CANCELLED":
            payload["cancellationReason"] = "I have a doctor's appointment about my anxiety"
            payload["status"] = "CANCELLED"
    body = {"triggerEvent": trigger,
            "createdAt": (created or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "payload": payload}
    return json.dumps(body).encode()


def calendly_uri(event_uuid: str, invitee_uuid: str) -> str:
    """An invitee URI as Calendly's API v2 spells it."""
    return f"https://api.calendly.com/scheduled_events/{event_uuid}/invitees/{invitee_uuid}"


def calendly(event: str, invitee: str, start: datetime, *, event_uuid: str = "GBGBDCAADAED",
             created: datetime | None = None, old_invitee: str | None = None,
             new_invitee: str | None = None, rescheduled: bool = False,
             phone: str | None = "+1 415-555-0123") -> bytes:
    """A Calendly webhook body for `event` about invitee `invitee`."""
    uri = calendly_uri(event_uuid, invitee)
    now = (created or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    payload: dict[str, Any]
    if event.startswith("invitee_no_show."):
        payload = {"uri": f"https://api.calendly.com/invitee_no_shows/{uuid.uuid4().hex}",
                   "invitee": uri, "created_at": now}
    else:
        payload = {
            "cancel_url": f"https://calendly.com/cancellations/{invitee}",
            "created_at": now, "email": "test@example.com", "event":
            f"https://api.calendly.com/scheduled_events/{event_uuid}",
            "first_name": "John", "last_name": "Doe", "name": "John Doe",
            "new_invitee": calendly_uri("NEWEVENT", new_invitee) if new_invitee else None,
            "old_invitee": calendly_uri("OLDEVENT", old_invitee) if old_invitee else None,
            "questions_and_answers": [], "reschedule_url":
            f"https://calendly.com/reschedulings/{invitee}",
            "rescheduled": rescheduled, "status": "canceled" if event.endswith("canceled")
            else "active",
            "text_reminder_number": phone, "timezone": "America/New_York",
            "tracking": {"utm_campaign": None, "utm_source": None},
            "updated_at": now, "uri": uri,
            "scheduled_event": {
                "uri": f"https://api.calendly.com/scheduled_events/{event_uuid}",
                "name": "50 Minute Session", "status": "active",
                "start_time": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "end_time": (start + timedelta(minutes=50)).astimezone(UTC).isoformat()
                .replace("+00:00", "Z"),
                "event_type": "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2",
                "location": {"type": "zoom", "join_url": "https://zoom.us/j/1"},
                "invitees_counter": {"total": 1, "active": 1, "limit": 1},
                "created_at": now, "updated_at": now,
                "event_memberships": [{"user": "https://api.calendly.com/users/TANA",
                                       "user_email": "ana@practice.example"}],
                "event_guests": [],
            },
        }
        if event == "invitee.canceled":
            payload["cancellation"] = {"canceled_by": "John Doe",
                                       "reason": "feeling too low to come",
                                       "canceler_type": "invitee", "created_at": now}
    return json.dumps({"created_at": now, "created_by": "https://api.calendly.com/users/TANA",
                       "event": event, "payload": payload}).encode()
