"""FHIR R4 Appointment -> an intake command, and OperationOutcome for every answer.

R4 Appointments validate with fhir.resources' R4B models (the Appointment did not change
between R4 and R4B). Senders that already speak R5 add fields such as `subject` or
`virtualService`; those are read where they help and removed before validation, so a
vendor's mix of versions is accepted rather than refused as unknown fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.appointment import Appointment, AppointmentParticipant
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from missed_session.domain.models import Client, Modality
from missed_session.intake import fields
from missed_session.intake.absence import TherapistAbsent
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


@dataclass(frozen=True)
class PatientNamed:
    """How an Appointment names its client when it does not contain the Patient."""

    reference: str | None
    """`Patient/123` or an absolute URL (None when named by identifier only)."""
    identifiers: tuple[tuple[str, str], ...]
    """(system, value) pairs; the system may be empty."""
    related: tuple[str, ...] = ()
    """References of RelatedPerson participants (who may come with the client)."""


def patient_named(resource: dict[str, Any]) -> PatientNamed | None:
    """The Patient an Appointment names without containing it; None when contained (or none).

    Read from the plain JSON: a participant whose actor is a Patient by reference
    (`Patient/123`, an absolute URL, or `type: Patient`) or by identifier only, else the R5
    `subject`. A RelatedPerson participant is listed too.
    """
    participants = [p for p in resource.get("participant") or [] if isinstance(p, dict)]
    actors: list[dict[str, Any]] = [p["actor"] for p in participants
                                     if isinstance(p.get("actor"), dict)]
    subject = resource.get("subject")
    if isinstance(subject, dict):
        actors.append({**subject, "type": subject.get("type") or "Patient"})
    related = tuple(str(a["reference"]) for a in actors if isinstance(a.get("reference"), str)
                    and _kind_of(a) == "RelatedPerson")
    for actor in actors:
        if _kind_of(actor) != "Patient":
            continue
        reference = actor.get("reference")
        if isinstance(reference, str) and reference.startswith("#"):
            return None  # contained: the Appointment carries the Patient
        identifier = actor.get("identifier")
        identifiers = tuple(
            (str(item.get("system") or ""), str(item["value"]))
            for item in ([identifier] if isinstance(identifier, dict) else [])
            if isinstance(item.get("value"), str) and item["value"].strip())
        if isinstance(reference, str) or identifiers:
            return PatientNamed(reference if isinstance(reference, str) else None,
                                identifiers, related)
    if related and not any(_kind_of(actor) == "Patient" for actor in actors):
        return PatientNamed(None, (), related)  # whose RelatedPerson: read from the EHR
    return None


THERAPIST_KINDS = frozenset({"Practitioner", "PractitionerRole"})
RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
"""What a FHIR resource type looks like (a reference's second-to-last segment)."""


def therapist_absent(resource: dict[str, Any], command: Command) -> Command:
    """A `noshow` whose Practitioner did not attend, and the Patient did, is the therapist's.

    FHIR has no host no-show of its own: `noshow` says "some or all of the participants
    have not/did not appear". When a Practitioner participant's status is `declined` and
    no Patient participant's is, the one who did not appear is the therapist.
    """
    if not isinstance(command, NoShow) or resource.get("status") != "noshow":
        return command
    declined: set[str] = set()
    for participant in resource.get("participant") or []:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        if isinstance(actor, dict) and participant.get("status") == "declined":
            declined.add(_kind_of(actor) or "")
    if declined & THERAPIST_KINDS and "Patient" not in declined:
        return TherapistAbsent("the practitioner did not attend (Appointment noshow, "
                               "Practitioner participant declined)", command.session_id)
    return command


def reference_type(reference: str) -> str | None:
    """The resource type a reference names (`Appointment/1`, `.../Appointment/1/_history/2`)."""
    return _kind_of({"reference": reference})


def _kind_of(actor: dict[str, Any]) -> str | None:
    """The resource type an actor reference names (from `type` or the reference's path)."""
    if isinstance(actor.get("type"), str):
        return str(actor["type"])
    reference = actor.get("reference")
    if not isinstance(reference, str):
        return None
    parts = reference.split("?")[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    kind = parts[-2] if len(parts) >= 2 else ""
    return kind if RESOURCE_TYPE.fullmatch(kind) else None


def translate(resource: dict[str, Any], defaults: IntakeDefaults, *,
              client: Client | None = None, unresolved: str = "") -> Command:
    """The command for one Appointment resource (a JSON object), by its status.

    `client`: the client from the directory, when the Appointment names its Patient
    without containing it (see `patient_named`); `unresolved` says why there is none.
    """
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
        return _book(appointment, session, hints, defaults, client, unresolved)
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
          defaults: IntakeDefaults, client: Client | None, unresolved: str) -> Command:
    if appointment.start is None:
        return Refuse("Appointment.start: a booked appointment needs a start", session)
    start: datetime = appointment.start
    try:
        parts = _booking_parts(appointment, session, hints, defaults, client, unresolved)
        booking = fields.build_booking(**parts)
        if client is not None and parts["client_ref"] == client.ref:
            booking = booking.model_copy(update={"client": client})
    except IncompleteError as error:
        return Book(session, start, None, incomplete=str(error), reason="booked")
    return Book(session, start, booking, reason="booked")


def _booking_parts(appointment: Appointment, session: str, hints: dict[str, Any],
                   defaults: IntakeDefaults, client: Client | None = None,
                   unresolved: str = "") -> dict[str, Any]:
    participants = list(appointment.participant or [])
    patient_reference = _reference(appointment, participants, "Patient") or _hint_reference(
        hints)
    if patient_reference is None and client is None:
        raise IncompleteError("Appointment.participant: no Patient participant")
    practitioner = _reference(appointment, participants, "Practitioner") or _reference(
        appointment, participants, "PractitionerRole")
    if practitioner is None:
        msg = "Appointment.participant: no Practitioner participant (the therapist)"
        raise IncompleteError(msg)
    therapist = defaults.therapists.get(practitioner) or fields.therapist_id(
        practitioner.rsplit("/", 1)[-1].lstrip("#"), "Appointment.participant", defaults)
    duration = appointment.minutesDuration
    if duration is None and appointment.end is not None and appointment.start is not None:
        duration = int((appointment.end - appointment.start).total_seconds() // 60)
    patient = (None if patient_reference is None
               else _contained_patient(appointment, patient_reference))
    if patient is None and client is not None:
        return {
            "session": session, "client_ref": client.ref,
            "client_first_name": client.first_name, "phone": client.phone,
            "client_time_zone": client.time_zone, "therapist": therapist,
            "start": appointment.start, "duration_minutes": duration,
            "modality": _modality(appointment, hints), "email": client.email,
        }
    if patient is None:
        msg = (f"Appointment.participant: the Patient is not contained, and "
               f"{unresolved or 'it could not be found in the client directory'}")
        raise IncompleteError(msg)
    names = list(patient.name or [])
    given = next((g for name in names for g in (name.given or [])), None)
    phones = [t for t in (patient.telecom or []) if t.system in {"phone", "sms"} and t.value]
    phones.sort(key=lambda t: (t.use != "mobile", t.rank or 99))
    emails = sorted((t for t in (patient.telecom or []) if t.system == "email" and t.value),
                    key=lambda t: t.rank or 99)
    phone, email = fields.reach(phones[0].value if phones else None,
                                emails[0].value if emails else None, "Patient.telecom",
                                defaults)
    identifiers = [i.value for i in (patient.identifier or []) if i.value]
    if not identifiers:
        raise IncompleteError("Patient.identifier: the contained Patient has no identifier "
                         "(it becomes the client ref)")
    zone = _extension_code(patient.extension) or _extension_code(appointment.extension)
    return {
        "session": session,
        "client_ref": fields.identifier(identifiers[0]),
        "client_first_name": fields.first_name(given, "Patient.name.given"),
        "phone": phone,
        "email": email,
        "client_time_zone": fields.time_zone(zone, "Patient.extension(timezone)", defaults),
        "therapist": therapist,
        "start": appointment.start,
        "duration_minutes": duration,
        "modality": _modality(appointment, hints),
    }


def _modality(appointment: Appointment, hints: dict[str, Any]) -> Modality:
    virtual = "virtualService" in hints or any(
        "virtual" in (coding.code or "").lower() or "tele" in (coding.code or "").lower()
        for concept in (appointment.appointmentType,) if concept is not None
        for coding in (concept.coding or [])
    )
    return Modality.TELEHEALTH if virtual else Modality.IN_PERSON


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
