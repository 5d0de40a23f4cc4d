"""The payloads that cross the workflow/activity boundary only ever gain fields with defaults.

A new worker reads the payloads that older code wrote into histories (on replay, and when
it picks up a running workflow), so a contract model may never lose a field (`extra` is
forbidden: the old payload would be refused) nor gain a required one (the old payload lacks
it). `KNOWN` is each model's fields as of this test: a new field with a default is added to
the optional ones here; anything else fails with the rule (`missed_session/contracts/`).
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from pydantic import BaseModel

import activities.audit
import activities.brake
import activities.caring
import activities.notices

MODULES = ("audit", "brake", "caring", "notices", "outreach")

KNOWN: dict[str, tuple[set[str], set[str]]] = {
    # model: (required fields, fields with a default)
    "BrakeCheck": ({"at", "risk_tier", "session_id", "start"}, {"modality", "time_scale"}),
    "BrakeVerdict": (set(), {"due", "episode", "modality", "no_shows", "paged",
                             "release_after_minutes", "window_minutes"}),
    "CaringRequest": ({"client_ref", "idempotency_key", "index", "series_id", "since"}, set()),
    "CaringResult": (set(), {"consent_record", "end", "sent", "skipped"}),
    "ClosingRecord": ({"client_ref", "event", "outcome", "start", "therapist_id"}, set()),
    "EscalationRequest": ({"client_first_name", "client_ref", "contact", "idempotency_key",
                           "session_id"}, {"clinician_override", "risk_tier"}),
    "LadderLookup": ({"client_ref", "no_show_at", "session_id"}, {"phone"}),
    "NoShowDocumented": ({"events", "notice"}, {"plan"}),
    "NoShowRecord": ({"alerted", "expired", "notice"}, {"ladder", "plan_for"}),
    "NoticeDelivery": ({"address", "channel", "client_ref", "clinician_id", "code", "expires_at",
                        "first_name", "idempotency_key", "issued_at", "notice", "risk_tier"},
                       set()),
    "NoticePlan": ({"ack_code_hours", "include_first_name", "policy", "roster_version"}, set()),
    "NoticePlanRequest": ({"notice", "risk_tier"}, set()),
    "NoticeRequest": ({"client_first_name", "client_ref", "notice", "plan", "risk_tier"},
                      {"time_scale"}),
    "NoticeStateRecord": ({"at", "notice", "policy", "risk_tier", "state"},
                          {"clinician_id", "via"}),
    "OutreachRequest": ({"client", "idempotency_key", "session_id"}, {"ladder_since"}),
    "Recipient": ({"channels", "clinician_id", "role", "sms"}, set()),
    "RecipientQuery": ({"at", "target", "therapist_id"}, set()),
    "Recipients": ({"recipients"}, {"reason"}),
    "ResolutionDelivery": ({"address", "channel", "client_ref", "clinician_id",
                            "idempotency_key", "notice", "reason"}, set()),
    "RunningLadder": ({"last_event_at", "session_id"}, set()),
    "StepOutcome": (set(), {"at", "consent_record", "result"}),
    "TextCheck": ({"client_ref", "day_end", "day_start"}, set()),
}


def contracts() -> dict[str, type[BaseModel]]:
    """Every model the contracts package defines or re-exports, by name."""
    found: dict[str, type[BaseModel]] = {}
    for name in MODULES:
        module = importlib.import_module(f"missed_session.contracts.{name}")
        exported = set(getattr(module, "__all__", ()))
        for attribute, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseModel)
                    and (value.__module__ == module.__name__ or attribute in exported)):
                found[attribute] = value
    return found


def test_every_contract_is_known() -> None:
    assert sorted(contracts()) == sorted(KNOWN)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_a_contract_never_loses_a_field_nor_gains_a_required_one(name: str) -> None:
    model = contracts()[name]
    required = {field for field, info in model.model_fields.items() if info.is_required()}
    known_required, known_optional = KNOWN[name]
    lost = (known_required | known_optional) - set(model.model_fields)
    assert not lost, f"{name} lost {sorted(lost)}: old histories' payloads carry them"
    new = required - known_required
    assert not new, (f"{name} requires {sorted(new)}: old histories' payloads lack them; "
                     "give a new field a default")


def test_the_activity_modules_reexport_the_contracts_not_copies() -> None:
    found = contracts()
    for module in (activities.audit, activities.brake, activities.caring, activities.notices):
        for name in module.__all__:
            if name in found:
                assert getattr(module, name) is found[name], f"{module.__name__}.{name}"
