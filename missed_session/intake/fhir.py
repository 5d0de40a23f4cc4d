"""FHIR R4 Appointment -> an intake command, and OperationOutcome for every answer.

R4 Appointments validate with fhir.resources' R4B models (the Appointment did not change
between R4 and R4B). Senders that already speak R5 add fields such as `subject` or
`virtualService`; those are read where they help and removed before validation, so a
vendor's mix of versions is accepted rather than refused as unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.appointment import Appointment, AppointmentParticipant
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from missed_session.domain.models import Modality
from missed_session.intake import fields
from missed_session.intake.commands import (
    Attended,
    Book,
    Cancel,
    CheckIn,
    Command,
    NoShow,
    Record,
    Refuse,
)
from missed_session.intake.fields import IncompleteError, IntakeDefaults

TIME_ZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
"""The core extension naming an IANA time zone (valueCode), on the Patient or Appointment."""

R5_ONLY = ("subject", "virtualService", "class", "cancellationDate", "note", "account",
           "replaces", "occurrenceChanged", "recurrenceId", "recurrenceTemplate",
           "previousAppointment", "originatingAppointment")
"""Appointment fields that R5 added: read for hints, removed before R4B validation."""

RECORD_ONLY = {
    "proposed": "the appointment is only proposed; nothing is started",
    "pending": "the appointment is pending confirmation; nothing is started",
    "waitlist": "the appointment is on the waitlist; nothing is started",
}


def translate(resource: dict[str, Any], defaults: IntakeDefaults) -> Command:
    """The command for one Appointment resource (a JSON object), by its status."""
    if resource.get("resourceType") != "Appointment":
        return Refuse("resourceType: expected Appointment", malformed=True)
    hints = {key: resource[key] for key in R5_ONLY if key in resource}
    cleaned = {key: value for key, value in resource.items() if key not in R5_ONLY}
    cleaned = _r5_service_types_removed(cleaned)
    try:
        appointment = Appointment.model_validate(cleaned)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "Appointment"
        message = str(first["msg"]).removeprefix("Value error, ")
        return Refuse(f"Appointment.{where}: {message}", malformed=True)
    try:
        session = fields.session_id(appointment.id, "Appointment.id")
    except IncompleteError as error:
        return Refuse(str(error))
    status = str(appointment.status)
    if status in RECORD_ONLY:
        return Record(RECORD_ONLY[status], session)
    if status == "booked":
        return _book(appointment, session, hints, defaults)
    by_status: dict[str, Command] = {
        "arrived": CheckIn(session),
        "checked-in": CheckIn(session),
        "cancelled": Cancel(session, reason=_text(appointment.cancelationReason)
                            or "cancelled in the scheduler"),
        "entered-in-error": Cancel(session, reason="entered in error", entered_in_error=True),
        "noshow": NoShow(session),
        "fulfilled": Attended(session),
    }
    return by_status.get(
        status, Refuse(f"Appointment.status: unknown status {status!r}", session))


def _book(appointment: Appointment, session: str, hints: dict[str, Any],
          defaults: IntakeDefaults) -> Command:
    if appointment.start is None:
        return Refuse("Appointment.start: a booked appointment needs a start", session)
    start: datetime = appointment.start
    try:
        booking = fields.build_booking(**_booking_parts(appointment, session, hints, defaults))
    except IncompleteError as error:
        return Book(session, start, None, incomplete=str(error), reason="booked")
    return Book(session, start, booking, reason="booked")


def _booking_parts(appointment: Appointment, session: str, hints: dict[str, Any],
                   defaults: IntakeDefaults) -> dict[str, Any]:
    participants = list(appointment.participant or [])
    patient_reference = _reference(appointment, participants, "Patient") or _hint_reference(
        hints)
    if patient_reference is None:
        raise IncompleteError("Appointment.participant: no Patient participant")
    practitioner = _reference(appointment, participants, "Practitioner") or _reference(
        appointment, participants, "PractitionerRole")
    if practitioner is None:
        msg = "Appointment.participant: no Practitioner participant (the therapist)"
        raise IncompleteError(msg)
    therapist = defaults.therapists.get(practitioner) or fields.therapist_id(
        practitioner.rsplit("/", 1)[-1].lstrip("#"), "Appointment.participant", defaults)
    patient = _contained_patient(appointment, patient_reference)
    if patient is None:
        msg = (f"Appointment.participant: the Patient is a reference without a contained "
               f"resource, so there is no phone number; {fields.DIRECTORY_MISSING}")
        raise IncompleteError(msg)
    names = list(patient.name or [])
    given = next((g for name in names for g in (name.given or [])), None)
    phones = [t for t in (patient.telecom or []) if t.system in {"phone", "sms"} and t.value]
    phones.sort(key=lambda t: (t.use != "mobile", t.rank or 99))
    identifiers = [i.value for i in (patient.identifier or []) if i.value]
    if not identifiers:
        raise IncompleteError("Patient.identifier: the contained Patient has no identifier "
                         "(it becomes the client ref)")
    zone = _extension_code(patient.extension) or _extension_code(appointment.extension)
    duration = appointment.minutesDuration
    if duration is None and appointment.end is not None and appointment.start is not None:
        duration = int((appointment.end - appointment.start).total_seconds() // 60)
    virtual = "virtualService" in hints or any(
        "virtual" in (coding.code or "").lower() or "tele" in (coding.code or "").lower()
        for concept in (appointment.appointmentType,) if concept is not None
        for coding in (concept.coding or [])
    )
    return {
        "session": session,
        "client_ref": fields.identifier(identifiers[0]),
        "client_first_name": fields.first_name(given, "Patient.name.given"),
        "phone": fields.phone_number(phones[0].value if phones else None,
                                     "Patient.telecom", defaults),
        "client_time_zone": fields.time_zone(zone, "Patient.extension(timezone)", defaults),
        "therapist": therapist,
        "start": appointment.start,
        "duration_minutes": duration,
        "modality": Modality.TELEHEALTH if virtual else Modality.IN_PERSON,
    }


def _reference(appointment: Appointment, participants: list[AppointmentParticipant],
               kind: str) -> str | None:
    """The first participant's reference to a `kind` resource (contained or not)."""
    contained = {f"#{r.id}": r.get_resource_type() for r in appointment.contained or []}
    for participant in participants:
        actor = participant.actor
        reference = actor.reference if actor is not None else None
        if actor is None or reference is None:
            continue
        if kind in {contained.get(reference), actor.type} or reference.split("/")[-2:-1] == [
                kind]:
            return str(reference)
    return None


def _hint_reference(hints: dict[str, Any]) -> str | None:
    subject = hints.get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("reference"), str):
        return str(subject["reference"])
    return None


def _contained_patient(appointment: Appointment, reference: str) -> Patient | None:
    if not reference.startswith("#"):
        return None
    for resource in appointment.contained or []:
        if isinstance(resource, Patient) and resource.id == reference[1:]:
            return resource
    return None


def _extension_code(extensions: Any) -> str | None:
    for extension in extensions or []:
        if extension.url == TIME_ZONE_EXTENSION and extension.valueCode:
            return str(extension.valueCode)
    return None


def _text(concept: Any) -> str:
    """A cancellation reason by its code only.

    `text` may be free text with clinical detail, which the audit trail's reasons must not
    carry.
    """
    if concept is None:
        return ""
    for coding in concept.coding or []:
        if coding.code:
            return f"cancelled in the scheduler (reason code {fields.identifier(coding.code)})"
    return ""


def _r5_service_types_removed(resource: dict[str, Any]) -> dict[str, Any]:
    """R5 made serviceType a CodeableReference ({"concept": ...}); R4 wants the concept."""
    service_types = resource.get("serviceType")
    if not isinstance(service_types, list):
        return resource
    flattened = [
        entry["concept"] if isinstance(entry, dict) and "concept" in entry else entry
        for entry in service_types
        if not (isinstance(entry, dict) and "reference" in entry and "concept" not in entry)
    ]
    return {**resource, "serviceType": flattened}


def operation_outcome(severity: str, code: str, text: str) -> dict[str, Any]:
    """An OperationOutcome with one issue (severity: information|warning|error|fatal).

    `code` is from the FHIR issue-type value set (informational, processing, invalid,
    not-found, conflict, duplicate, transient, security, not-supported).
    """
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }
