"""The history archiver: a follower that keeps every closed session's history.

Why a follower and not an activity at close: the workflow's close path belongs to the
protocol, and an activity there would archive a history that is not finished yet (its
own completion is not in it) and would miss sessions that fail, are terminated or time
out, which run no close path at all. The archiver instead asks Temporal's visibility for
session workflows that closed, however they closed, and archives each history once it is
complete; it needs no change to the workflow and can catch up on sessions closed while it
was down, as long as Temporal still has them (the namespace's retention: run it more often
than that). Runs in the worker (`worker.trail_followers`) every
`checkpoint_interval_seconds`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError, RPCStatusCode

from missed_session.store.history_archive import ArchivedHistory, archive, archived_among

log = structlog.get_logger(__name__)

WORKFLOW_TYPE = "SessionWorkflow"
SESSION_PREFIX = "session-"
"""Session workflows are `session-<session id>` (`domain.models.workflow_id_for`)."""
MARGIN = timedelta(minutes=5)
"""How far before its last round the archiver looks again (visibility lags a little)."""


def session_id_of(workflow_id: str) -> str | None:
    """The session a workflow id belongs to, or None for other workflows."""
    if not workflow_id.startswith(SESSION_PREFIX):
        return None
    return workflow_id.removeprefix(SESSION_PREFIX)


class HistoryArchiver:
    """Archives the history of every session workflow that closed."""

    def __init__(self, client: Client, pool: asyncpg.Pool, *,
                 interval: timedelta = timedelta(seconds=60)) -> None:
        self._client = client
        self._pool = pool
        self._interval = interval
        self._since: datetime | None = None

    async def round(self) -> int:
        """Archive the sessions closed since the last round (all, the first time)."""
        started = datetime.now(UTC)
        query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus != 'Running'"
        if self._since is not None:
            since = (self._since - MARGIN).isoformat(timespec="seconds").replace("+00:00", "Z")
            query += f" AND CloseTime >= '{since}'"
        closed: list[WorkflowExecution] = [
            execution async for execution in self._client.list_workflows(query)
            if session_id_of(execution.id) is not None
        ]
        done = await archived_among(self._pool, [session_id_of(e.id) or "" for e in closed])
        written = 0
        for execution in closed:
            session_id = session_id_of(execution.id)
            if session_id is None or session_id in done:
                continue
            if await self._archive(session_id, execution):
                written += 1
        self._since = started
        return written

    async def _archive(self, session_id: str, execution: WorkflowExecution) -> bool:
        handle = self._client.get_workflow_handle(execution.id, run_id=execution.run_id)
        try:
            history = await handle.fetch_history()
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                log.warning("history_gone_before_archiving", workflow_id=execution.id)
                return False
            raise
        status = execution.status.name if execution.status is not None else "UNKNOWN"
        return await archive(self._pool, ArchivedHistory(
            session_id, execution.id, execution.run_id, status, execution.close_time,
            history.to_json(),
        ))

    async def run(self) -> None:
        """Rounds until cancelled; a failed round is logged and tried again next time."""
        while True:
            try:
                written = await self.round()
                if written:
                    log.info("histories_archived", sessions=written)
            except (OSError, RPCError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("history_archive_round_failed", error=type(error).__name__)
            await asyncio.sleep(self._interval.total_seconds())
