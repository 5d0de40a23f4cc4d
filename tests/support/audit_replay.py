"""Helpers first written for tests/test_audit_replay.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.client import WorkflowHistory

from missed_session.audit.replay import history_activities, recorded_events
from missed_session.domain.models import AuditEvent, SessionBooking, SessionResult
from tests.support.servers import TEST_CONVERTER
from workflows.session import SessionWorkflow

HISTORIES = Path(__file__).parents[1] / "histories"


RECORDED = sorted(HISTORIES.glob("*.json"))


BRANCH_FILES = [path for path in RECORDED if path.name != "outcomes.json"]


def load(path: Path) -> WorkflowHistory:
    """A recorded history; its workflow id follows from the branch name."""
    workflow_id = f"session-hist-{path.stem.replace('_', '-')}"
    return WorkflowHistory.from_json(workflow_id, path.read_text(encoding="utf-8"))


async def trail_from_history(history: WorkflowHistory) -> list[AuditEvent]:
    """The audit trail the history asked for, as PostgreSQL would hold it."""
    activities = await history_activities(history, TEST_CONVERTER)
    events = [event for activity in activities for event in recorded_events(activity)]
    return sorted(events, key=lambda event: event.sequence)


@workflow.defn(name="SessionWorkflow")
class ChangedSessionWorkflow(SessionWorkflow):
    """Today's workflow with one activity added before anything else (and the first timer)."""

    @workflow.run
    async def run(self, booking: SessionBooking) -> SessionResult:
        await workflow.execute_activity(
            "look_up_client_preferences", booking.client.ref,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return await super().run(booking)

