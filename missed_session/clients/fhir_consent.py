"""A client's consent history as FHIR R4B Consent resources (right of access, exports).

One Consent per record, newest last: a withdrawal is its own resource (`provision.type`
deny), never an edit of the one it withdraws, exactly as the history stores it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent

from missed_session.domain.clients import ConsentRecord

SYSTEM = "urn:missed-session:consent"
"""Code system of the consent subjects and sources (channel, emergency contact)."""
CLIENT_SYSTEM = "urn:missed-session:client-ref"
"""Identifier system of the pseudonymous client ref."""


def consent_resource(client_ref: str, record: ConsentRecord) -> dict[str, Any]:
    """One record as a validated FHIR R4B Consent (JSON-ready)."""
    provision: dict[str, Any] = {
        "type": "permit" if record.granted else "deny",
        "period": {"start": record.effective_at.isoformat()},
        "action": [{"coding": [{"system": SYSTEM, "code": record.subject.value}]}],
    }
    if record.scope is not None:
        provision["purpose"] = [{"system": SYSTEM, "code": f"scope-{record.scope.value}"}]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": record.record_id,
        "status": "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": SYSTEM, "code": "contact"}]}],
        "patient": {"identifier": {"system": CLIENT_SYSTEM, "value": client_ref}},
        "dateTime": record.recorded_at.isoformat(),
        "policyRule": {"coding": [{"system": SYSTEM, "code": record.source.value}],
                       "text": f"recorded by {record.recorded_by}"},
        "provision": provision,
    }
    if record.contact_point is not None:
        # The number or address the record covers (the export is the client's own data).
        resource["extension"] = [{"url": f"{SYSTEM}#contact-point",
                                  "valueString": record.contact_point}]
    validated = Consent.model_validate(resource)
    loaded: dict[str, Any] = json.loads(validated.model_dump_json())
    return loaded


def consent_bundle(client_ref: str, history: Sequence[ConsentRecord]) -> dict[str, Any]:
    """The whole history as a FHIR R4B collection Bundle, oldest record first."""
    bundle = Bundle.model_validate({
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": consent_resource(client_ref, record)} for record in history],
    })
    loaded: dict[str, Any] = json.loads(bundle.model_dump_json())
    return loaded
