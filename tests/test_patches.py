"""One patch for a generation of patches (`workflows.patches`): new sessions write one
marker where they wrote one per patch, and every session recorded before replays as it ran.

Two sets of histories, each recorded by `scripts/record_histories.py` (every branch):
`before-2026-12-08/` with the code of main at 99e4ee5 (one marker per patch: the sessions in
flight when this generation is deployed), and `patches-2026-12-08/` with the generation's
code. The histories directly under tests/histories/ are older still (tests/test_audit_replay.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.worker import Replayer

from missed_session.audit.replay import cross_check, history_activities, replay_failure
from tests.support.audit_replay import HISTORIES, load, trail_from_history
from tests.support.servers import TEST_CONVERTER
from worker import WORKFLOW_RUNNER
from workflows.patches import GENERATION, TODAY
from workflows.session import SessionWorkflow

BEFORE = sorted((HISTORIES / "before-2026-12-08").glob("*.json"))
TODAYS = sorted((HISTORIES / "patches-2026-12-08").glob("*.json"))
PATCH_MARKER = "core_patch"
UPSERT = "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"


def _events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["events"]
    return events


def _patches(path: Path) -> list[str]:
    """The patch ids a history's markers name, in order."""
    ids = []
    for event in _events(path):
        marker = event.get("markerRecordedEventAttributes")
        if not isinstance(marker, dict) or marker.get("markerName") != PATCH_MARKER:
            continue
        data = marker["details"]["patch-data"]["payloads"][0]["data"]
        ids.append(json.loads(base64.b64decode(data))["id"])
    return ids


def _upserts(path: Path, name: str) -> list[object]:
    """The values a history's search-attribute upserts gave `name`, in order."""
    values = []
    for event in _events(path):
        if event.get("eventType") != UPSERT:
            continue
        upsert = event["upsertWorkflowSearchAttributesEventAttributes"]
        assert isinstance(upsert, dict)
        field = upsert["searchAttributes"]["indexedFields"].get(name)
        if field is not None:
            values.append(json.loads(base64.b64decode(field["data"])))
    return values


def test_both_sets_hold_every_branch() -> None:
    names = {path.stem for path in HISTORIES.glob("*.json")} - {"outcomes"}
    assert {path.stem for path in BEFORE} == names
    assert {path.stem for path in TODAYS} == names


@pytest.mark.parametrize("path", BEFORE + TODAYS,
                         ids=[f"{path.parent.name}/{path.stem}" for path in BEFORE + TODAYS])
async def test_history_replays_with_todays_workflow(path: Path) -> None:
    replayer = Replayer(workflows=[SessionWorkflow], data_converter=TEST_CONVERTER,
                        workflow_runner=WORKFLOW_RUNNER)
    assert await replay_failure(replayer, load(path)) is None


@pytest.mark.parametrize("path", TODAYS, ids=[path.stem for path in TODAYS])
async def test_todays_history_cross_checks_with_its_own_trail(path: Path) -> None:
    history = load(path)
    trail = await trail_from_history(history)
    assert cross_check(await history_activities(history, TEST_CONVERTER), trail) == []


@pytest.mark.parametrize("path", TODAYS, ids=[path.stem for path in TODAYS])
def test_a_new_session_writes_one_marker_for_the_generation(path: Path) -> None:
    before = path.parent.parent / "before-2026-12-08" / path.name
    if not _patches(before):
        assert _patches(path) == []  # asked no patch before: asks none now (attended)
        assert _upserts(path, "TemporalChangeVersion") == []
        return
    assert _patches(path) == [TODAY]
    assert _upserts(path, "TemporalChangeVersion") == [[TODAY]]


@pytest.mark.parametrize("name", ["reached_on_the_call", "high_risk_awaiting_acknowledgment"])
def test_the_no_show_records_plan_the_alerts_climb(name: str) -> None:
    """`alert-planned`: one activity fewer at every no-show (the alert's `plan_notice`)."""
    def scheduled(path: Path) -> list[str]:
        return [event["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                for event in _events(path)
                if event.get("eventType") == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"]

    before = scheduled(HISTORIES / "before-2026-12-08" / f"{name}.json")
    today = scheduled(HISTORIES / "patches-2026-12-08" / f"{name}.json")
    assert before[:3] == ["call_client", "document_no_show", "plan_notice"]
    assert today[:2] == ["call_client", "document_no_show"]
    assert today[2] != "plan_notice"
    assert before.count("plan_notice") == today.count("plan_notice") + 1


def test_the_histories_before_had_a_marker_per_patch() -> None:
    """What the generation saves: the no-show branches asked three to five patches each."""
    asked = {path.stem: _patches(path) for path in BEFORE}
    assert all(set(ids) <= GENERATION for ids in asked.values())
    assert len(asked["reached_on_the_call"]) == 3
    assert len(asked["high_risk_awaiting_acknowledgment"]) >= 4


@pytest.mark.parametrize("name", ["reached_on_the_call", "unreachable_escalated",
                                  "text_reply_reached"])
def test_the_status_moves_once_at_the_no_show(name: str) -> None:
    """Outreach begins in the no-show's own task: its status attribute skips `no_show`."""
    before = _upserts(HISTORIES / "before-2026-12-08" / f"{name}.json", "SessionStatus")
    today = _upserts(HISTORIES / "patches-2026-12-08" / f"{name}.json", "SessionStatus")
    assert before[:3] == ["waiting", "no_show", "outreach"]
    assert today[:2] == ["waiting", "outreach"]
    assert [status for status in before if status != "no_show"] == today
