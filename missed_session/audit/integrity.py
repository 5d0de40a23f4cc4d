"""Integrity alarms: what the service raises when a trail or a session leaves the protocol.

Two sources of findings (`missed_session.store.checkpoints.IntegrityFinding`):

- the checkpointer, which refuses to sign a trail that no longer extends what it signed, or
  anything at all once the checkpoint log has been cut (`Checkpointer`);
- `StoppedSessions`, a follower of Temporal's visibility: a session workflow that ended
  (terminated, cancelled, timed out, failed, or even completed) without its trail's `closed`
  row means the protocol for that client stopped outside the protocol. Runs every
  `STOPPED_INTERVAL` (15 s), so the supervisor hears of it within a minute.

Each finding is kept once in `integrity_findings` (which `audit verify --all` lists) and
raised by `IntegrityAlarm`: an urgent task to the clinical supervisor, through the notice
machinery every other notice uses (the notice's row; with a roster, a `NoticeWorkflow` whose
ladder starts at the supervisor and climbs to whoever is on call), a metric
(`missed_session_integrity_alarms`, by kind) and an error in the log. The notice names the
session and what was found, never the client's details.

A search attribute on the session itself is not set: a workflow's attributes change only
from inside the workflow, and a stopped one not at all. The notice carries `NoticePriority`
and `NoticeState` like any other, and its workflow id names the kind
(`notice-<session>/integrity-<kind>`).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import MetricMeter, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from missed_session.audit.archive import WORKFLOW_TYPE, session_id_of
from missed_session.contracts.notices import NoticePlan, NoticeRequest, notice_workflow_id
from missed_session.domain.models import NoticeKind, Priority, RiskTier, TherapistNotice
from missed_session.domain.notices import Policy, Step, Target, Then
from missed_session.metrics import PREFIX
from missed_session.store.checkpoints import (
    STOPPED,
    IntegrityFinding,
    record_finding,
)
from missed_session.store.inbox import InboxStore
from missed_session.store.notices import RosterStore
from missed_session.temporal import search_attributes as attrs

log = structlog.get_logger(__name__)

POLICY = Policy(
    name="integrity",
    priority=Priority.URGENT,
    steps=(Step(notify=Target.SUPERVISOR, minutes=10), Step(notify=Target.ON_CALL, minutes=10)),
    then=Then.REPEAT,
    repeats=3,
)
"""The supervisor first (compliance is theirs to call in), then whoever is on call."""
STOPPED_INTERVAL = timedelta(seconds=15)
MARGIN = timedelta(minutes=5)
"""How far before its last round the follower looks again (visibility lags a little)."""
TITLES = {
    "trail_not_extending": "Audit trail of session {session} no longer matches its signed "
                           "checkpoints; nothing more is signed for it (audit verify {session})",
    "checkpoint_log_broken": "The checkpoint log was cut or rewritten; no checkpoint is signed "
                             "until it is resolved (run audit verify --all)",
    STOPPED: "Session {session} stopped outside the protocol: its workflow ended without "
             "closing the session; take the protocol over by hand",
}


class IntegrityAlarm:
    """Raises one finding: a notice (its row; with a roster, its climb), metric, log."""

    def __init__(self, client: Client, pool: asyncpg.Pool, *, task_queue: str,
                 meter: MetricMeter | None = None) -> None:
        self._client = client
        self._pool = pool
        self._task_queue = task_queue
        meter = meter or (client.service_client.config.runtime or Runtime.default()).metric_meter
        self._alarms = meter.create_counter(
            PREFIX + "integrity_alarms",
            "Trails refused by the checkpointer, a cut checkpoint log, sessions stopped "
            "outside the protocol",
        )

    async def __call__(self, finding: IntegrityFinding) -> None:
        """Raise it; a notice already raised for the same session and kind is not raised again."""
        self._alarms.add(1, {"kind": finding.kind})
        log.error("integrity_alarm", session_id=finding.session_id, kind=finding.kind,
                  problem=finding.problem)
        therapist_id, client_ref, risk_tier = await self._session_facts(finding.session_id)
        title = TITLES.get(finding.kind, "Integrity finding for session {session}")
        notice = TherapistNotice(
            key=f"{finding.session_id}/integrity-{finding.kind}",
            session_id=finding.session_id, therapist_id=therapist_id,
            kind=NoticeKind.TASK, priority=Priority.URGENT,
            title=title.format(session=finding.session_id),
        )
        await InboxStore(self._pool).add_notice(notice)
        current = await RosterStore(self._pool).current()
        if current is None or current.roster is None:
            log.warning("integrity_alarm_inbox_only", session_id=finding.session_id,
                        reason="no roster is loaded")
            return
        plan = NoticePlan(policy=POLICY, include_first_name=False,
                          ack_code_hours=current.notices.ack_code_hours,
                          roster_version=current.version)
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self._client.start_workflow(
                "NoticeWorkflow",
                NoticeRequest(notice=notice, risk_tier=risk_tier, client_ref=client_ref,
                              client_first_name="", plan=plan),
                id=notice_workflow_id(notice.key),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=attrs.notice_initial(priority=Priority.URGENT.value,
                                                       opened=datetime.now(UTC)),
            )

    async def _session_facts(self, session_id: str) -> tuple[str, str, RiskTier]:
        """The session's therapist, client ref and risk tier as its trail recorded them."""
        row = await self._pool.fetchrow(
            "SELECT p.therapist_id, p.client_ref, s.data->>'risk_tier' AS risk_tier"
            " FROM (SELECT $1::text AS session_id) q"
            " LEFT JOIN projection_attendance p ON p.session_id = q.session_id"
            " LEFT JOIN audit_events s ON s.session_id = q.session_id"
            " AND s.event_type = 'scheduled'"
            " ORDER BY s.sequence LIMIT 1",
            session_id,
        )
        therapist = (row["therapist_id"] if row else None) or ""
        client_ref = (row["client_ref"] if row else None) or "unknown"
        try:
            risk_tier = RiskTier((row["risk_tier"] if row else None) or "high")
        except ValueError:
            risk_tier = RiskTier.HIGH
        return therapist, client_ref, risk_tier


class StoppedSessions:
    """Finds session workflows that ended without their `closed` row, and raises each once."""

    def __init__(self, client: Client, pool: asyncpg.Pool, alarm: IntegrityAlarm | None, *,
                 interval: timedelta = STOPPED_INTERVAL) -> None:
        self._client = client
        self._pool = pool
        self._alarm = alarm
        self._interval = interval
        self._since: datetime | None = None

    async def round(self) -> list[IntegrityFinding]:
        """Findings new since the last round (every ended session, the first time)."""
        started = datetime.now(UTC)
        query = (f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus != 'Running'"
                 " AND ExecutionStatus != 'ContinuedAsNew'")
        if self._since is not None:
            since = (self._since - MARGIN).isoformat(timespec="seconds").replace("+00:00", "Z")
            query += f" AND CloseTime >= '{since}'"
        ended: list[WorkflowExecution] = [
            execution async for execution in self._client.list_workflows(query)
            if session_id_of(execution.id) is not None
        ]
        ids = [session_id_of(e.id) for e in ended]
        settled = {row["session_id"] for row in await self._pool.fetch(
            "SELECT session_id FROM audit_events WHERE session_id = ANY($1::text[])"
            " AND event_type = 'closed' UNION SELECT session_id FROM integrity_findings"
            " WHERE session_id = ANY($1::text[]) AND kind = $2",
            ids, STOPPED,
        )}
        found = []
        for execution in ended:
            session_id = session_id_of(execution.id) or ""
            if session_id in settled:
                continue
            finding = IntegrityFinding(session_id, STOPPED, _how(execution))
            if self._alarm is not None:
                await self._alarm(finding)  # first: a failed alarm is tried again next round
            await record_finding(self._pool, finding)
            settled.add(session_id)
            found.append(finding)
        self._since = started
        return found

    async def run(self) -> None:
        """Rounds until cancelled; a failed round is logged and tried again next time."""
        while True:
            try:
                await self.round()
            except (OSError, RPCError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("stopped_sessions_round_failed", error=type(error).__name__)
            await asyncio.sleep(self._interval.total_seconds())


def _how(execution: WorkflowExecution) -> str:
    status = execution.status
    how = {
        WorkflowExecutionStatus.TERMINATED: "was terminated",
        WorkflowExecutionStatus.CANCELED: "was cancelled",
        WorkflowExecutionStatus.TIMED_OUT: "timed out",
        WorkflowExecutionStatus.FAILED: "failed",
        WorkflowExecutionStatus.COMPLETED: "completed",
    }.get(status, "ended") if status is not None else "ended"
    when = (f" at {execution.close_time.astimezone(UTC).isoformat(timespec='seconds')}"
            if execution.close_time else "")
    return (f"the session workflow {how}{when} without the trail's `closed` row: the "
            "protocol for this client stopped before its end")
