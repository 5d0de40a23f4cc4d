"""A client's directory entry from FHIR R4B Patient and RelatedPerson resources (pure).

Patient.identifier[0].value (or Patient.id) is the client ref, name[0].given[0] the first
name, telecom the contact points (phone/sms with use mobile/home/work; email), the
`tz-code` extension the time zone (else the caller's), and Patient.contact entries and
RelatedPerson resources for this patient the emergency contacts. Every problem names the
FHIR element, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.relatedperson import RelatedPerson
from pydantic import ValidationError

from missed_session.domain.clients import ClientRecord

TZ_EXTENSION = "http://hl7.org/fhir/StructureDefinition/tz-code"


class FHIRImportError(ValueError):
    """Resources that do not make a valid directory entry; the message names the element."""


def client_from_fhir(patient: Mapping[str, Any], related: Sequence[Mapping[str, Any]] = (),
                     *, time_zone: str | None = None) -> ClientRecord:
    """The directory entry a Patient (and RelatedPerson resources) describe."""
    try:
        resource = Patient.model_validate(dict(patient))
        people = [RelatedPerson.model_validate(dict(r)) for r in related]
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FHIRImportError(f"{where or 'resource'}: {first['msg']}") from None
    ref = (resource.identifier[0].value if resource.identifier else None) or resource.id
    given = resource.name[0].given if resource.name else None
    zone = next((ext.valueCode for ext in resource.extension or []
                 if ext.url == TZ_EXTENSION), None) or time_zone
    if zone is None:
        raise FHIRImportError(f"Patient.extension({TZ_EXTENSION}): required (or pass a zone)")
    phones, emails = _telecom(resource.telecom or [])
    contacts = [
        {"name": _name(contact.name), "phone": _first_phone(contact.telecom or []),
         "relationship": _relationship(contact.relationship)}
        for contact in resource.contact or []
    ]
    own_reference = f"Patient/{resource.id}" if resource.id else None
    for person in people:
        if own_reference and person.patient.reference not in {own_reference, None}:
            raise FHIRImportError("RelatedPerson.patient: refers to another patient")
        names = person.name or []
        contacts.append({"name": _name(names[0] if names else None),
                         "phone": _first_phone(person.telecom or []),
                         "relationship": _relationship(person.relationship)})
    try:
        return ClientRecord.model_validate({
            "ref": ref, "first_name": given[0] if given else "", "time_zone": zone,
            "phones": phones, "emails": emails, "emergency_contacts": contacts,
        })
    except ValidationError as error:
        first = error.errors()[0]
        where = _element(first["loc"])
        raise FHIRImportError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _telecom(points: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    phones: list[dict[str, Any]] = []
    emails: list[dict[str, Any]] = []
    for point in points:
        use = point.use if point.use in {"mobile", "home", "work"} else "home"
        if point.system in {"phone", "sms"}:
            phones.append({"number": point.value or "", "use": use})
        elif point.system == "email":
            emails.append({"address": point.value or "", "use": use})
    return phones, emails


def _first_phone(points: Sequence[Any]) -> str:
    return next((p.value for p in points if p.system in {"phone", "sms"} and p.value), "")


def _name(name: Any) -> str:
    if name is None:
        return ""
    if name.text:
        return str(name.text)[:100]
    return " ".join([*(name.given or []), name.family or ""]).strip()[:100]


def _relationship(concepts: Sequence[Any] | None) -> str:
    for concept in concepts or []:
        if concept.text:
            return str(concept.text)[:50]
        for coding in concept.coding or []:
            if coding.display or coding.code:
                return str(coding.display or coding.code)[:50]
    return ""


def _element(location: tuple[Any, ...]) -> str:
    names = {"ref": "Patient.identifier", "first_name": "Patient.name.given",
             "time_zone": "Patient.extension(tz-code)", "phones": "Patient.telecom",
             "emails": "Patient.telecom", "emergency_contacts": "Patient.contact/RelatedPerson"}
    if not location:
        return "Patient"
    return names.get(str(location[0]), str(location[0]))
