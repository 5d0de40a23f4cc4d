"""FHIR Patient/RelatedPerson and HL7 PID/NK1 into directory entries; the `clients` CLI.

The translators are pure (no server); the CLI runs as the operator runs it, a subprocess of
starter.py against the test's PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from missed_session.clients.fhir_import import TZ_EXTENSION, FHIRImportError, client_from_fhir
from missed_session.clients.hl7_import import HL7ImportError, client_from_hl7
from missed_session.domain.clients import ContactUse
from tests.support.servers import TEST_KEYS

ROOT = Path(__file__).resolve().parent.parent

PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "p1",
    "identifier": [{"system": "urn:practice", "value": "c-fhir-1"}],
    "name": [{"family": "Doe", "given": ["Robin"]}],
    "extension": [{"url": TZ_EXTENSION, "valueCode": "America/New_York"}],
    "telecom": [{"system": "phone", "value": "+14155550123", "use": "mobile"},
                {"system": "phone", "value": "+14155550124", "use": "work"},
                {"system": "email", "value": "robin@example.org", "use": "home"}],
}
RELATED: dict[str, Any] = {
    "resourceType": "RelatedPerson", "patient": {"reference": "Patient/p1"},
    "name": [{"given": ["Sam"], "family": "Doe"}],
    "relationship": [{"text": "partner"}],
    "telecom": [{"system": "phone", "value": "+14155550999"}],
}
HL7 = ("MSH|^~\\&|EHR|PRACTICE|MSR|PRACTICE|20261201||ADT^A04|1|P|2.5\r"
       "PID|1||c-hl7-1^^^PRACTICE||Doe^Robin||19900101|F|||||"
       "^PRN^CP^^1^415^5550123~^NET^Internet^robin@example.org|^WPN^PH^^1^415^5550124\r"
       "NK1|1|Doe^Sam|SPO||^PRN^PH^^1^415^5550999")


def test_fhir_patient_and_related_person_make_a_directory_entry() -> None:
    record = client_from_fhir(PATIENT, [RELATED])
    assert (record.ref, record.first_name, record.time_zone) == (
        "c-fhir-1", "Robin", "America/New_York")
    assert [(p.number, p.use) for p in record.phones] == [
        ("+14155550123", ContactUse.MOBILE), ("+14155550124", ContactUse.WORK)]
    assert [str(e.address) for e in record.emails] == ["robin@example.org"]
    assert [(c.name, c.phone, c.relationship) for c in record.emergency_contacts] == [
        ("Sam Doe", "+14155550999", "partner")]


@pytest.mark.parametrize(("change", "related", "message"), [
    ({"telecom": [{"system": "phone", "value": "415-555-0123"}]}, [], "Patient.telecom: "),
    ({"extension": []}, [], "Patient.extension("),
    ({}, [{**RELATED, "telecom": [{"system": "phone", "value": "+14155550123"}]}],
     "Patient: emergency_contacts.0.phone: is the client's own number"),
    ({}, [{**RELATED, "patient": {"reference": "Patient/other"}}], "RelatedPerson.patient"),
])
def test_fhir_problems_name_the_element(change: dict[str, Any], related: list[dict[str, Any]],
                                        message: str) -> None:
    with pytest.raises(FHIRImportError) as refused:
        client_from_fhir({**PATIENT, **change}, related)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "415-555-0123" not in str(refused.value)


def test_hl7_pid_and_nk1_make_a_directory_entry() -> None:
    record = client_from_hl7(HL7, time_zone="America/Los_Angeles")
    assert (record.ref, record.first_name) == ("c-hl7-1", "Robin")
    assert [(p.number, p.use) for p in record.phones] == [
        ("+14155550123", ContactUse.MOBILE), ("+14155550124", ContactUse.WORK)]
    assert [str(e.address) for e in record.emails] == ["robin@example.org"]
    assert [(c.name, c.phone, c.relationship) for c in record.emergency_contacts] == [
        ("Sam", "+14155550999", "SPO")]


def test_hl7_problems_name_the_field() -> None:
    with pytest.raises(HL7ImportError, match=r"^NK1 #1 phone: "):
        client_from_hl7(HL7.replace("^PRN^PH^^1^415^5550999", "^PRN^PH^^^^"),
                        time_zone="America/Los_Angeles")
    with pytest.raises(HL7ImportError, match=r"^time_zone: "):
        client_from_hl7(HL7, time_zone="Mars/Base")
    with pytest.raises(HL7ImportError, match=r"^PID: "):
        client_from_hl7("MSH|^~\\&|A\r", time_zone="America/Los_Angeles")


def starter(database_url: str, *args: str, stdin: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MSR_DATABASE_URL": database_url,
           "MSR_ENCRYPTION_KEYS": json.dumps(TEST_KEYS)}
    env.pop("MSR_CONFIG_FILE", None)
    return subprocess.run(
        [sys.executable, "starter.py", "clients", *args], cwd=ROOT, env=env, input=stdin,
        capture_output=True, text=True, timeout=60, check=False)


def test_the_clients_cli_adds_imports_consents_and_exports(database_url: str,
                                                           tmp_path: Path) -> None:
    hl7_file = tmp_path / "adt.hl7"
    hl7_file.write_text(HL7)
    imported = starter(database_url, "import", "--hl7", str(hl7_file), "--time-zone",
                       "America/Los_Angeles", "--by", "t-ana")
    assert (imported.returncode, imported.stdout.strip()) == (0, "client c-hl7-1 added"), (
        imported.stderr)
    given = starter(database_url, "consent", "c-hl7-1", "--subject", "emergency_contact",
                    "--contact-point", "+14155550999", "--give", "--scope", "unreachable",
                    "--date", "2026-01-15T09:00:00+00:00", "--source", "intake_form",
                    "--by", "t-ana")
    assert given.returncode == 0, given.stderr
    undated = starter(database_url, "consent", "c-hl7-1", "--subject", "text", "--withdraw",
                      "--source", "client_request", "--by", "t-ana")
    assert undated.returncode == 2
    assert undated.stderr.startswith("error: effective_at: ")
    unknown = starter(database_url, "update", "--file", "-", "--by", "t-ana", stdin=json.dumps(
        {"ref": "c-nobody", "first_name": "X", "time_zone": "UTC"}))
    assert unknown.returncode == 1
    assert "client_ref: no client 'c-nobody'" in unknown.stderr

    exported = starter(database_url, "export", "c-hl7-1")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["client"]["ref"] == "c-hl7-1"
    assert [r["subject"] for r in data["consent_history"]] == ["emergency_contact"]
    assert data["fhir_consent_bundle"]["entry"][0]["resource"]["resourceType"] == "Consent"
