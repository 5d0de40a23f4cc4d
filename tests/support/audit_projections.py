"""Helpers first written for tests/test_audit_projections.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncpg

ATTENDANCE = ("SELECT session_id, client_ref, therapist_id, start_at, outcome, closed_at"
              " FROM projection_attendance ORDER BY session_id")


TASKS = ("SELECT key, session_id, therapist_id, kind, priority, created_at"
         " FROM projection_open_tasks ORDER BY key")


async def snapshot(pool: asyncpg.Pool) -> tuple[list[tuple[object, ...]], ...]:
    return ([tuple(row) for row in await pool.fetch(ATTENDANCE)],
            [tuple(row) for row in await pool.fetch(TASKS)])

