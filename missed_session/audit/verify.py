"""`audit verify`: recompute sessions' hash chains and hold them against their checkpoints.

The chain names a row changed, missing or inserted without recomputing the hashes after
it. The latest checkpoint whose signature holds (`missed_session.store.checkpoints`) names
what a rewrite *with* recomputed hashes changed among the rows it covers; a checkpoint
whose signature does not hold is itself reported as forged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from missed_session.store.audit import AuditStore
from missed_session.store.chain import ChainReport, ChainRow, verify_chain
from missed_session.store.checkpoints import Checkpoint, CheckpointSigner, compare

PAGE = 500
"""Sessions read per query by `verify_all`."""


async def verify_session(store: AuditStore, session_id: str,
                         signer: CheckpointSigner | None = None) -> ChainReport:
    """Verify one session's chain (a closed session kept its `closed` row) and checkpoint."""
    rows = await store.chain_rows(session_id)
    report = verify_chain(session_id, rows, closed=await store.is_closed(session_id))
    if signer is None:
        return report
    found = await store.checkpoints(session_id)
    anchor, problem = against_checkpoints(rows, found, signer)
    return dataclasses.replace(report, anchor=anchor,
                               problem=problem if problem is not None else report.problem)


def against_checkpoints(rows: list[ChainRow], found: list[Checkpoint],
                        signer: CheckpointSigner) -> tuple[str, str | None]:
    """What anchors the trail, and what the checkpoints say is wrong with it (or None).

    `found` is latest first. A forged checkpoint is a problem in itself; the trail is held
    against the latest genuine one.
    """
    for checkpoint in found:
        if not checkpoint.verifies(signer):
            return "a forged checkpoint", (
                f"the checkpoint at row {checkpoint.sequence} is forged: its signature "
                f"(key {checkpoint.key_id!r}) does not verify"
            )
    if not found:
        return "not checkpointed yet", None
    latest = found[0]
    kind = "closing checkpoint" if latest.closing else "checkpoint"
    anchor = f"{kind} at row {latest.sequence}"
    problem = compare(rows, latest)
    if problem is None and latest.closing and len(rows) > latest.sequence:
        extra = rows[latest.sequence]
        problem = (f"row {extra.sequence} ({extra.event_type}) was added after the closing "
                   f"checkpoint")
    return anchor, problem


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


def describe(report: ChainReport) -> str:
    """One line for the operator."""
    if report.ok:
        anchor = f", {report.anchor}" if report.anchor else ""
        return f"OK {report.session_id}: {report.rows} rows, head {report.head}{anchor}"
    return f"BROKEN {report.session_id}: {report.problem}"
