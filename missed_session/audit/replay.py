"""`audit replay`: rerun a session's history with today's code, then check it against PostgreSQL.

Two checks, both needed:

1. *Replay*: temporalio's Replayer runs the current workflow code against the recorded
   history; any non-determinism (the code would now do something else) fails it. This shows
   the code in the repository is the code that produced the history.
2. *Cross-check*: every audit event the history asked `record_event`, `record_closing` or
   `record_no_show` to write is in PostgreSQL with the same content, every audit row has
   that cause in the history, and every side effect in the history (outreach attempt,
   voicemail, escalation, therapist notice, plan) has its audit row, and the other way round.

The workflow class is passed in by the caller (an entry point), so this inner package never
imports the workflows layer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError
from temporalio.api.history.v1 import MarkerRecordedEventAttributes
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from missed_session.domain.events import live
from missed_session.domain.models import AuditEvent, workflow_id_for

RECORD_ACTIVITIES = {
    "record_event", "record_closing", "record_no_show", "document_no_show",
}
"""Activities whose input (and result) is the audit event they append."""
LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""The marker the SDK records in the history for each local activity."""
ATTEMPT_KEY = re.compile(r"/attempt-(\d+)/(call|voicemail)$")

SIDE_EFFECTS: dict[str, tuple[str, ...]] = {
    # A step that may have reached the person is `*_uncertain`: recorded, never re-sent.
    "call_client": ("outreach_attempted", "outreach_failed", "outreach_uncertain"),
    "leave_voicemail": ("voicemail_left", "outreach_failed", "outreach_uncertain"),
    "call_emergency_contact": ("escalation_sent", "escalation_blocked", "escalation_uncertain"),
    "create_follow_up_plan": ("plan_created",),
}
"""Activity -> the audit event types that document its outcome (one of them must exist)."""
CAUSES: dict[str, tuple[str, ...]] = {
    "outreach_attempted": ("call_client",),
    "voicemail_left": ("leave_voicemail",),
    "escalation_sent": ("call_emergency_contact",),
    "plan_created": ("create_follow_up_plan",),
    "therapist_alerted": ("notify_therapist", "record_no_show", "document_no_show"),
}
"""Audit event type -> the activity that must have completed in the history for it."""
CHANNELS = {"call_client": "call", "leave_voicemail": "voicemail"}
"""Activity -> the `channel` its `outreach_failed` or `outreach_uncertain` event names."""


NOTICE_WORKFLOW_PREFIX = "notice-"
"""A notice's workflow id is this and its key (`activities.notices.notice_workflow_id`)."""


def is_notice(stream_id: str) -> bool:
    """Whether an audit trail is a notice's (`<session id>/<name>`), not a session's.

    Session ids are letters, digits, '.', '_' and '-' only; a notice key adds its name
    after a '/'.
    """
    return "/" in stream_id


SERIES_PREFIX = "caring:"
"""A caring-contacts series' trail and workflow id start so (`domain.caring.SERIES_PREFIX`)."""


def is_series(stream_id: str) -> bool:
    """Whether an audit trail is a caring-contacts series' (its id holds ':', no session's can).

    A series continues as new after each message, so its trail spans many runs: it is
    verified like any trail, but not replayed against one history.
    """
    return stream_id.startswith(SERIES_PREFIX)


def workflow_id_of(stream_id: str) -> str:
    """The workflow whose trail this is: `notice-<key>` or `session-<session id>`."""
    if is_notice(stream_id):
        return f"{NOTICE_WORKFLOW_PREFIX}{stream_id}"
    return workflow_id_for(stream_id)


@dataclass(frozen=True)
class HistoryActivity:
    """One activity the workflow scheduled, as the history records it."""

    activity_type: str
    """The activity's registered name."""
    arguments: list[Any]
    """Its decoded input (plain JSON values)."""
    completed: bool
    """Whether it completed (rather than failed, timed out or still running)."""
    result: Any = None
    """Its decoded result, if it completed and returned one."""
    local: bool = False
    """A local activity: the history keeps its result (in a marker), not its input."""

    @property
    def key(self) -> str:
        """The idempotency key or notice key of its input, if it has one."""
        first = self.arguments[0] if self.arguments else None
        if isinstance(first, dict):
            return str(first.get("idempotency_key") or first.get("key") or "")
        return ""


@dataclass
class ReplayReport:
    """What replaying one session found."""

    session_id: str
    """The session."""
    replay_failure: str | None = None
    """Why the current code could not replay the history (non-determinism), if it could not."""
    mismatches: list[str] = field(default_factory=list)
    """Differences between the history and the PostgreSQL trail, in history order."""

    @property
    def ok(self) -> bool:
        """Replayed cleanly and matched the trail."""
        return self.replay_failure is None and not self.mismatches

    def describe(self) -> str:
        """`OK <session>` or the first problem, one line."""
        if self.replay_failure is not None:
            return f"MISMATCH {self.session_id}: replay failed: {self.replay_failure}"
        if self.mismatches:
            return f"MISMATCH {self.session_id}: {self.mismatches[0]}"
        return f"OK {self.session_id}"


CLOSING_EVENTS = {
    "workflow_execution_completed_event_attributes": "completed",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_timed_out_event_attributes": "timed out",
    "workflow_execution_canceled_event_attributes": "cancelled",
    "workflow_execution_continued_as_new_event_attributes": "continued as new",
}
"""The history's last event, when the workflow has ended -> how it ended."""


def workflow_status(history: WorkflowHistory) -> str:
    """How the history ends: "running", "completed", or how the workflow stopped."""
    if history.events:
        last = history.events[-1]
        for attributes, status in CLOSING_EVENTS.items():
            if last.HasField(attributes):  # type: ignore[arg-type]
                return status
    return "running"


async def stopped_problem(history: WorkflowHistory, converter: DataConverter) -> str | None:
    """Why a session's workflow stopped without closing it, or None (running, completed).

    A session is meant to end in `closed`; a workflow that failed, was terminated or timed
    out left its client without the rest of the protocol, and a reviewer must see it.
    """
    status = workflow_status(history)
    if status in {"running", "completed"}:
        return None
    reason = ""
    last = history.events[-1]
    if last.HasField("workflow_execution_failed_event_attributes"):
        failure = await converter.decode_failure(
            last.workflow_execution_failed_event_attributes.failure
        )
        reason = f": {failure}"
    elif last.HasField("workflow_execution_terminated_event_attributes"):
        reason = f": {last.workflow_execution_terminated_event_attributes.reason}"
    return f"the workflow {status} before the session closed{reason}"


def new_replayer(workflows: Sequence[type], data_converter: DataConverter,
                 workflow_runner: SandboxedWorkflowRunner | None = None) -> Replayer:
    """A Replayer with the service's converter (payloads are encrypted) and sandbox."""
    if workflow_runner is None:
        return Replayer(workflows=workflows, data_converter=data_converter)
    return Replayer(workflows=workflows, data_converter=data_converter,
                    workflow_runner=workflow_runner)


async def replay_failure(replayer: Replayer, history: WorkflowHistory) -> str | None:
    """Replay one history; the failure (non-determinism or other) as text, or None."""
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return describe_failure(result.replay_failure)


def describe_failure(failure: BaseException | None) -> str | None:
    """A replay failure (and its cause) as one line of text; None for no failure."""
    if failure is None:
        return None
    cause = failure.__cause__
    detail = f"{failure}" + (f" ({cause})" if cause is not None else "")
    return " ".join(detail.split())


async def history_activities(history: WorkflowHistory,
                             converter: DataConverter) -> list[HistoryActivity]:
    """Every activity in the history, decoded, with whether it completed, in history order.

    Ordinary activities from their scheduled and completed events; local activities from
    the marker the SDK records when one ends (its type in the marker's `data`, which the
    SDK writes as plain JSON, and its result, which our codec encrypted).
    """
    found: dict[int, HistoryActivity] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            arguments = list(await converter.decode(attributes.input.payloads))
            found[event.event_id] = HistoryActivity(attributes.activity_type.name, arguments,
                                                    completed=False)
        elif event.HasField("activity_task_completed_event_attributes"):
            attributes_done = event.activity_task_completed_event_attributes
            activity = found[attributes_done.scheduled_event_id]
            results = list(await converter.decode(attributes_done.result.payloads))
            found[attributes_done.scheduled_event_id] = replace(
                activity, completed=True, result=results[0] if results else None)
        elif (event.HasField("marker_recorded_event_attributes")
              and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER):
            found[event.event_id] = await _local_activity(
                event.marker_recorded_event_attributes, converter)
    return list(found.values())


async def _local_activity(marker: MarkerRecordedEventAttributes,
                          converter: DataConverter) -> HistoryActivity:
    data = json.loads(marker.details["data"].payloads[0].data)
    results: list[Any] = []
    if "result" in marker.details:
        results = list(await converter.decode(marker.details["result"].payloads))
    return HistoryActivity(str(data.get("activity_type", "")), [],
                           completed=not marker.HasField("failure"),
                           result=results[0] if results else None, local=True)


def recorded_events(activity: HistoryActivity) -> list[AuditEvent]:
    """The audit events a record activity wrote, where they landed, or was asked to write.

    Its result when it has one (the events as recorded, at the places they hold: after rows
    a failed workflow task left, they follow the marker that superseded those); else its
    input (an activity still running or failed: what it was asked to append).
    """
    if activity.activity_type not in RECORD_ACTIVITIES:
        return []
    result = activity.result
    if isinstance(result, dict) and activity.activity_type == "document_no_show":
        result = result.get("events")  # the events beside the alert as written
    found = _events(result if isinstance(result, list) else [result])
    if found:
        return found
    if not activity.arguments:
        return []
    payload = activity.arguments[0]
    if not isinstance(payload, dict) or activity.activity_type == "record_event":
        return _events([payload])
    if activity.activity_type == "record_closing":
        return _events([payload.get("event")])
    return _events([payload.get("expired"), payload.get("alerted")])  # the no-show's pair


def _events(payloads: Sequence[Any]) -> list[AuditEvent]:
    """The payloads as audit events, or none if any is not one."""
    try:
        return [AuditEvent.model_validate(payload) for payload in payloads]
    except ValidationError:
        return []


def _attempt(activity: HistoryActivity) -> int | None:
    match = ATTEMPT_KEY.search(activity.key)
    return int(match.group(1)) if match else None


def _label(event: AuditEvent) -> str:
    return f"#{event.sequence} {event.event_type.value}"


def cross_check(activities: Sequence[HistoryActivity], trail: Sequence[AuditEvent],
                *, closed: bool = True) -> list[str]:
    """Differences between the history's activities and the audit trail, in history order.

    `closed`: the workflow has finished, so every activity it scheduled has ended and every
    record it asked for must be in PostgreSQL. Rows a failed workflow task left, and the
    marker that superseded them, are not the session's course (`events.live`): the history
    holds no cause for them, and a row the history did record must not be among them.
    """
    course = live(trail)
    return [*_records(activities, course, closed=closed), *_side_effects(activities, course)]


def _records(activities: Sequence[HistoryActivity], trail: Sequence[AuditEvent],
             *, closed: bool) -> list[str]:
    """Each recorded event is in the trail, unchanged; each row was recorded by the history."""
    problems: list[str] = []
    by_sequence = {event.sequence: event for event in trail}
    caused: set[int] = set()
    for activity in activities:
        for recorded in recorded_events(activity):
            problems += _recorded(recorded, by_sequence, settled=activity.completed or closed)
            caused.add(recorded.sequence)
    for event in trail:
        if event.sequence not in caused:
            problems.append(f"audit row {_label(event)} has no cause in the history")
    return problems


def _recorded(recorded: AuditEvent, by_sequence: dict[int, AuditEvent], *,
              settled: bool) -> list[str]:
    """Whether the trail holds the event the history recorded, as recorded."""
    stored = by_sequence.get(recorded.sequence)
    if stored is None:
        return [f"the history records audit event {_label(recorded)} but the audit trail has "
                "no such row"] if settled else []
    if stored != recorded:
        return [f"audit row {_label(stored)} differs from the event the history recorded "
                f"there ({_label(recorded)})"]
    return []


def _side_effects(activities: Sequence[HistoryActivity],
                  trail: Sequence[AuditEvent]) -> list[str]:
    """Each side effect in the history is documented, and each documented one happened."""
    problems: list[str] = []
    for activity in activities:
        documented_by = SIDE_EFFECTS.get(activity.activity_type)
        if documented_by is None:
            continue
        attempt = _attempt(activity)
        found = [
            event for event in trail
            if event.event_type.value in documented_by
            and (attempt is None or event.data.get("attempt") == attempt)
            and (event.event_type.value not in {"outreach_failed", "outreach_uncertain"}
                 or event.data.get("channel") == CHANNELS.get(activity.activity_type))
        ]
        if not found:
            where = f" for attempt {attempt}" if attempt is not None else ""
            problems.append(f"the history has {activity.activity_type}{where} but the audit "
                            f"trail has no {' or '.join(documented_by)} event{where}")
    for event in trail:
        causes = CAUSES.get(event.event_type.value)
        if causes is None:
            continue
        value = event.data.get("attempt")
        attempt = value if isinstance(value, int) else None
        matching = [
            activity for activity in activities
            if activity.activity_type in causes and activity.completed
            and (attempt is None or _attempt(activity) in (None, attempt))
        ]
        if not matching:
            problems.append(f"audit row {_label(event)} has no completed "
                            f"{' or '.join(causes)} in the history")
    return problems
