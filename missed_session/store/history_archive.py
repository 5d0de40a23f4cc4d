"""Archived Temporal histories of closed sessions, beside their trails.

Stored as Temporal's own JSON (`WorkflowHistory.to_json()`): every payload still sealed
with the service's keys, so the archive holds no readable client data and a changed
payload does not open. Rows are written once (append-only, like the trail).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from temporalio.client import WorkflowHistory


@dataclass(frozen=True)
class ArchivedHistory:
    """One closed session's history as archived."""

    session_id: str
    workflow_id: str
    run_id: str
    status: str
    """How the workflow closed (COMPLETED, FAILED, TERMINATED, ...)."""
    close_time: datetime | None
    history: str
    """`WorkflowHistory.to_json()`."""

    def workflow_history(self) -> WorkflowHistory:
        """The history, as `fetch_history()` would have returned it."""
        return WorkflowHistory.from_json(self.workflow_id, self.history)


async def archive(pool: asyncpg.Pool, entry: ArchivedHistory) -> bool:
    """Keep the history; False when the session's history is archived already."""
    status = await pool.execute(
        "INSERT INTO history_archive (session_id, workflow_id, run_id, status, close_time,"
        " history, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (session_id) DO NOTHING",
        entry.session_id, entry.workflow_id, entry.run_id, entry.status, entry.close_time,
        entry.history, hashlib.sha256(entry.history.encode()).hexdigest(),
    )
    return status.endswith(" 1")


async def archived(pool: asyncpg.Pool, session_id: str) -> ArchivedHistory | None:
    """The session's archived history, if any (refused if its digest does not match)."""
    row = await pool.fetchrow(
        "SELECT session_id, workflow_id, run_id, status, close_time, history, sha256"
        " FROM history_archive WHERE session_id = $1",
        session_id,
    )
    if row is None:
        return None
    if hashlib.sha256(row["history"].encode()).hexdigest() != row["sha256"]:
        msg = f"the archived history of session {session_id} does not match its digest"
        raise ValueError(msg)
    return ArchivedHistory(row["session_id"], row["workflow_id"], row["run_id"], row["status"],
                           row["close_time"], row["history"])


async def archived_among(pool: asyncpg.Pool, session_ids: Sequence[str]) -> set[str]:
    """Which of these sessions have an archived history."""
    rows = await pool.fetch(
        "SELECT session_id FROM history_archive WHERE session_id = ANY($1::text[])",
        list(session_ids),
    )
    return {row["session_id"] for row in rows}
