"""`audit verify`: recompute sessions' hash chains from PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

from missed_session.store.audit import AuditStore
from missed_session.store.chain import ChainReport, verify_chain

PAGE = 500
"""Sessions read per query by `verify_all`."""


async def verify_session(store: AuditStore, session_id: str) -> ChainReport:
    """Verify one session's chain (including that a closed session kept its `closed` row)."""
    rows = await store.chain_rows(session_id)
    return verify_chain(session_id, rows, closed=await store.is_closed(session_id))


async def verify_all(store: AuditStore, *, page: int = PAGE) -> AsyncIterator[ChainReport]:
    """Verify every session with an audit trail, in session id order, a page at a time."""
    after = ""
    while True:
        session_ids = await store.session_ids(after=after, limit=page)
        if not session_ids:
            return
        for session_id in session_ids:
            yield await verify_session(store, session_id)
        after = session_ids[-1]


def describe(report: ChainReport) -> str:
    """One line for the operator."""
    if report.ok:
        return f"OK {report.session_id}: {report.rows} rows, head {report.head}"
    return f"BROKEN {report.session_id}: {report.problem}"
