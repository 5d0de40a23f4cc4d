"""`audit verify`: recompute sessions' hash chains and hold them against their checkpoints.

The chain names a row changed, missing or inserted without recomputing the hashes after
it. Every checkpoint of the trail whose signature holds, and every entry the checkpoint log
has for it (`missed_session.store.checkpoints.held_against`), names what a rewrite *with*
recomputed hashes changed among the rows it covers, rows after the closing checkpoint, and
checkpoints that are gone; a checkpoint whose signature does not hold is itself reported as
forged. `verify_all` adds the checkpoint log as a whole (`check_log`: continuity, and the
heads written outside PostgreSQL) and the integrity findings the service recorded (trails it
refused to sign, sessions that stopped outside the protocol).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from missed_session.store import checkpoints
from missed_session.store.audit import AuditStore
from missed_session.store.chain import ChainReport, ChainRow, verify_chain
from missed_session.store.checkpoints import (
    Checkpoint,
    CheckpointSigner,
    HeadSink,
    HeadSinkError,
    LogEntry,
    held_against,
)

PAGE = 500
"""Sessions read per query by `verify_all`."""


async def verify_session(store: AuditStore, session_id: str,
                         signer: CheckpointSigner | None = None) -> ChainReport:
    """Verify one session's chain (a closed session kept its `closed` row) and checkpoints."""
    rows = await store.chain_rows(session_id)
    report = verify_chain(session_id, rows, closed=await store.is_closed(session_id))
    if signer is None:
        return report
    found = await store.checkpoints(session_id)
    logged = await checkpoints.log_entries_of(store.pool, session_id)
    anchor, problem = against_checkpoints(rows, found, signer, logged)
    return dataclasses.replace(report, anchor=anchor,
                               problem=problem if problem is not None else report.problem)


def against_checkpoints(rows: list[ChainRow], found: list[Checkpoint],
                        signer: CheckpointSigner,
                        logged: list[LogEntry] | None = None) -> tuple[str, str | None]:
    """What anchors the trail, and what its checkpoints say is wrong with it (or None)."""
    return held_against(rows, found, logged or [], signer)


async def verify_all(store: AuditStore, *, page: int = PAGE,
                     signer: CheckpointSigner | None = None) -> AsyncIterator[ChainReport]:
    """Verify every session with an audit trail, in session id order, a page at a time."""
    after = ""
    while True:
        session_ids = await store.session_ids(after=after, limit=page)
        if not session_ids:
            return
        for session_id in session_ids:
            yield await verify_session(store, session_id, signer)
        after = session_ids[-1]


async def log_problems(store: AuditStore, signer: CheckpointSigner | None,
                       heads: HeadSink | None) -> list[str]:
    """The checkpoint log's problems, one line each (`BROKEN checkpoint log: ...`)."""
    if signer is None:
        return []
    try:
        kept = None if heads is None else await asyncio.to_thread(heads.heads)
    except HeadSinkError as error:
        return [f"BROKEN checkpoint log: its heads outside the database cannot be read: {error}"]
    return [f"BROKEN checkpoint log: {problem}"
            for problem in await checkpoints.check_log(store.pool, signer, kept)]


async def finding_lines(store: AuditStore, session_id: str | None = None) -> list[str]:
    """What the service found and alarmed on (`FOUND <session>: <kind>: ...`), oldest first.

    Every finding, or one session's.
    """
    return [f"FOUND {finding.session_id}: {finding.kind} "
            f"({found_at.isoformat(timespec='seconds')}): {finding.problem}"
            for finding, found_at in await checkpoints.findings(store.pool)
            if session_id is None or finding.session_id == session_id]


def describe(report: ChainReport) -> str:
    """One line for the operator."""
    if report.ok:
        anchor = f", {report.anchor}" if report.anchor else ""
        return f"OK {report.session_id}: {report.rows} rows, head {report.head}{anchor}"
    return f"BROKEN {report.session_id}: {report.problem}"
