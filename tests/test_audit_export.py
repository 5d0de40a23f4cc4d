"""`audit export`: JSON lines with the hashes, and a FHIR R4 Bundle whose every resource
validates with the `fhir.resources` models, for the trail of every recorded branch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.task import Task

import starter
from missed_session.audit.export import fhir_bundle
from missed_session.store.audit import AuditStore
from tests.support.audit_export import (
    cli_env,  # noqa: F401 - fixtures, used by name
    recorded_trail,
)
from tests.support.audit_replay import BRANCH_FILES, HISTORIES

RESOURCES: dict[str, Any] = {"Appointment": Appointment, "AuditEvent": FhirAuditEvent,
             "Communication": Communication, "Task": Task}
OUTCOMES = json.loads((HISTORIES / "outcomes.json").read_text())
STATUS = {"attended": "fulfilled", "attended_late": "fulfilled", "cancelled": "cancelled"}


@pytest.mark.parametrize("path", BRANCH_FILES, ids=[path.stem for path in BRANCH_FILES])
async def test_every_branch_exports_valid_fhir(path: Path) -> None:
    trail = await recorded_trail(path)
    bundle = fhir_bundle(trail[0].session_id, trail)
    Bundle.model_validate(bundle)
    by_type: dict[str, list[dict[str, object]]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        RESOURCES[resource["resourceType"]].model_validate(resource)  # each on its own too
        by_type.setdefault(resource["resourceType"], []).append(resource)

    [appointment] = by_type["Appointment"]
    assert appointment["status"] == STATUS.get(OUTCOMES[path.stem], "noshow")
    assert len(by_type["AuditEvent"]) == len(trail)
    attempts = [e for e in trail if e.event_type.value in {
        "outreach_attempted", "voicemail_left", "outreach_failed", "escalation_sent",
        "message_sent"}]
    assert len(by_type.get("Communication", [])) == len(attempts)
    plans = [e for e in trail if e.event_type.value == "plan_created"]
    if plans:
        assert by_type["Task"]
    text = json.dumps(bundle)
    for personal in ("Robin", "robin@example.org", "+1415555", "Sam"):
        assert personal not in text


@pytest.mark.usefixtures("cli_env")
async def test_audit_export_command(pool: asyncpg.Pool,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    trail = await recorded_trail(HISTORIES / "unreachable_escalated.json")
    store = AuditStore(pool)
    for event in trail:
        assert (await store.record([event])).new
    session_id = trail[0].session_id

    def cli(*argv: str) -> int:
        return starter.main(list(argv))

    assert await asyncio.to_thread(cli, "audit", "export", session_id) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = await store.chain_rows(session_id)
    assert [line["hash"] for line in lines] == [row.hash for row in rows]
    assert [line["event_type"] for line in lines] == [e.event_type.value for e in trail]

    assert await asyncio.to_thread(cli, "audit", "export", session_id, "--format", "fhir") == 0
    bundle = json.loads(capsys.readouterr().out)
    Bundle.model_validate(bundle)
    assert bundle["entry"][0]["resource"]["status"] == "noshow"

    assert await asyncio.to_thread(cli, "audit", "export", "s-none") == 1
    assert capsys.readouterr().out == "no audit events for session s-none\n"
    assert await asyncio.to_thread(cli, "audit", "export", session_id, "--format", "pdf") == 2
