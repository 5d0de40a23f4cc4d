"""The client an EHR's Appointment names by reference or identifier, from the directory.

EHRs send an Appointment whose Patient participant is `Patient/123` or an identifier, not
a contained Patient. The client is found, in order:

1. by a link recorded when that Patient was imported (`client_fhir_links`: its absolute
   reference, or any of its identifiers);
2. by the directory's own ref: an identifier's value, or the Patient's id, is the ref the
   FHIR import gives a client (`clients.fhir_import`);
3. with a FHIR base configured: read from the EHR (SMART Backend Services), the Patient by
   reference or by an identifier search, with the RelatedPersons for it; imported into the
   directory (an existing entry is not overwritten) and linked, so the next Appointment
   finds it at step 1.

The client's details then come from the directory as of now (with the practice's consent
defaults), exactly as for a booking that sends only a client ref.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from missed_session.application.clients import STORE_ERRORS, ClientUseCases
from missed_session.application.service import Application, UnavailableError
from missed_session.clients.fhir_import import FHIRImportError, client_from_fhir
from missed_session.domain.models import Client
from missed_session.intake import fields
from missed_session.intake.fhir import PatientNamed
from missed_session.intake.fields import IntakeDefaults
from missed_session.intake.smart import FhirReader, FhirReadError
from missed_session.store.fhir_links import Link, LinkKind

DIRECTORY_FAILURES: tuple[type[BaseException], ...] = (UnavailableError, *STORE_ERRORS)
"""Errors that mean the directory (or its connection) failed: the sender should retry."""
IMPORTER = "fhir-import"
"""`recorded_by` of the directory entries read from an EHR."""


@dataclass(frozen=True)
class Miss:
    """Why no client was found; `transient` when asking again later may find one."""

    message: str
    transient: bool = False


class Patients:
    """Finds (and when it must, imports) the client an Appointment names."""

    def __init__(self, app: Application, reader: FhirReader | None,
                 defaults: IntakeDefaults) -> None:
        self._app = app
        self._reader = reader
        self._defaults = defaults

    def links(self, named: PatientNamed) -> list[Link]:
        """The ways `named` may have been linked: its absolute reference, its identifiers."""
        found: list[Link] = []
        if named.reference is not None:
            found.append((LinkKind.REFERENCE, self._absolute(named.reference)))
        found.extend((LinkKind.IDENTIFIER, f"{system}|{value}")
                     for system, value in named.identifiers)
        return found

    def _absolute(self, reference: str) -> str:
        bare = reference.split("/_history/", maxsplit=1)[0].rstrip("/")
        if self._reader is not None and not bare.startswith(("http://", "https://")):
            return f"{self._reader.base_url}/{bare.lstrip('/')}"
        return bare

    async def client_for(self, named: PatientNamed) -> Client | Miss:
        """The directory's client for the Patient, or why there is none."""
        if named.reference is None and not named.identifiers:
            found = await self._patient_of_related(named)
            if isinstance(found, Miss):
                return found
            named = found
        try:
            clients = await self._app.clients()
            ref = await clients.linked(self.links(named))
            if ref is None:
                ref = await self._by_own_ref(clients, named)
        except DIRECTORY_FAILURES as error:
            return Miss(f"the client directory failed ({type(error).__name__})",
                        transient=True)
        if ref is None and self._reader is not None:
            imported = await self._import(named)
            if isinstance(imported, Miss):
                return imported
            ref = imported
        if ref is None:
            return Miss("no client in the directory is linked to this Patient, and no FHIR "
                        "base is configured to read it from (MSR_INTAKE_FHIR_BASE_URL)")
        return await self._client(ref)

    async def _patient_of_related(self, named: PatientNamed) -> PatientNamed | Miss:
        """An Appointment naming only a RelatedPerson: the Patient it is related to."""
        if self._reader is None:
            return Miss("the Appointment names only a RelatedPerson, and no FHIR base is "
                        "configured to read whose it is (MSR_INTAKE_FHIR_BASE_URL)")
        for reference in named.related:
            if self._reader.url(reference) is None:
                continue
            try:
                person = await self._reader.read(reference)
            except FhirReadError as error:
                if error.transient:
                    return Miss(f"reading the RelatedPerson: {error}", transient=True)
                continue
            patient = person.get("patient")
            if isinstance(patient, dict) and isinstance(patient.get("reference"), str):
                return PatientNamed(patient["reference"], (), named.related)
        return Miss("the Appointment names no Patient, and its RelatedPerson names none")

    async def _by_own_ref(self, clients: ClientUseCases, named: PatientNamed) -> str | None:
        candidates = [fields.identifier(value) for _, value in named.identifiers]
        if named.reference is not None:
            bare = named.reference.split("/_history/")[0].rstrip("/")
            candidates.append(fields.identifier(bare.rsplit("/", 1)[-1]))
        for candidate in candidates:
            if candidate and await clients.known(candidate):
                return candidate
        return None

    async def _client(self, ref: str) -> Client | Miss:
        try:
            clients = await self._app.clients()
        except UnavailableError as error:
            return Miss(str(error), transient=True)
        resolved = await clients.resolve_booking({"client": {"ref": ref}})
        if not isinstance(resolved, dict):
            message = getattr(resolved, "message", "the directory entry is not usable")
            transient = getattr(getattr(resolved, "kind", None), "value", "") == "unavailable"
            return Miss(f"the client's directory entry: {message}", transient=transient)
        return Client.model_validate(resolved["client"])

    async def _import(self, named: PatientNamed) -> str | Miss:
        """Read the Patient (and its RelatedPersons) from the EHR into the directory."""
        assert self._reader is not None
        try:
            patient = await self._read_patient(named)
            if isinstance(patient, Miss):
                return patient
            related = await self._related(patient)
        except FhirReadError as error:
            return Miss(f"reading the Patient from the FHIR server: {error}",
                        transient=error.transient)
        try:
            record = client_from_fhir(patient, related, time_zone=self._defaults.time_zone)
        except FHIRImportError as error:
            return Miss(f"the FHIR server's Patient cannot be imported: {error}")
        try:
            clients = await self._app.clients()
            if not await clients.known(record.ref):
                added = await clients.add(record.model_dump(mode="json"), recorded_by=IMPORTER,
                                          source="FHIR Patient read from the EHR")
                if not added.ok and not await clients.known(record.ref):
                    return Miss(f"the imported Patient could not be added: {added.message}",
                                transient=added.kind.value == "unavailable")
            await clients.link(record.ref, [*self.links(named), *self._own_links(patient)])
        except DIRECTORY_FAILURES as error:
            return Miss(f"the client directory failed ({type(error).__name__})",
                        transient=True)
        return record.ref

    async def _read_patient(self, named: PatientNamed) -> dict[str, Any] | Miss:
        assert self._reader is not None
        if named.reference is not None:
            if self._reader.url(named.reference) is None:
                return Miss("the Patient reference is not under the configured FHIR base")
            patient = await self._reader.read(named.reference.split("/_history/")[0])
            if patient.get("resourceType") != "Patient":
                return Miss("the FHIR server's answer for the Patient is not a Patient")
            return patient
        for system, value in named.identifiers:
            token = f"{system}|{value}" if system else value
            found = await self._reader.search("Patient", identifier=token)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                return Miss("more than one Patient at the FHIR server has this identifier")
        return Miss("the FHIR server has no Patient with this identifier")

    async def _related(self, patient: dict[str, Any]) -> list[dict[str, Any]]:
        """The Patient's RelatedPersons (its emergency contacts); none if not readable."""
        assert self._reader is not None
        patient_id = patient.get("id")
        if not isinstance(patient_id, str):
            return []
        try:
            return await self._reader.search("RelatedPerson", patient=f"Patient/{patient_id}")
        except FhirReadError as error:
            if error.transient:
                raise
            return []  # not allowed (scope) or not supported: the Patient's own contacts

    def _own_links(self, patient: dict[str, Any]) -> list[Link]:
        links: list[Link] = []
        if isinstance(patient.get("id"), str) and self._reader is not None:
            links.append((LinkKind.REFERENCE,
                          f"{self._reader.base_url}/Patient/{patient['id']}"))
        for identifier in patient.get("identifier") or []:
            if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
                links.append((LinkKind.IDENTIFIER,
                              f"{identifier.get('system') or ''}|{identifier['value']}"))
        return links
