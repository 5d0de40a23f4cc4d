"""The failures of PostgreSQL and Temporal that entry points catch, named in one place.

Entry points (`api/`, `cli/`, `console/`, `intake/`) never import `asyncpg` or `temporalio`
(ruff's banned-api rule, TID251, enforces it): what they must catch from a use case is
re-exported here as tuples, and what they must ask Temporal is a use case.
"""

from __future__ import annotations

import asyncpg
from temporalio.service import RPCError

from missed_session.store.write_errors import STORE_FAILURES

VALUE_REFUSED: tuple[type[BaseException], ...] = (asyncpg.DataError,)
"""PostgreSQL refused a value the request carried (SQLSTATE class 22): bad input, not an
outage; sending it again cannot help."""
DATABASE_FAILED: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""PostgreSQL could not be reached, went away, or refused a statement."""
STORE_ERRORS: tuple[type[BaseException], ...] = STORE_FAILURES
"""Every store error on a use case's path (`DATABASE_FAILED` and the driver's internal
state errors): an outage or a refusal, never a 500."""
TEMPORAL_FAILED: tuple[type[BaseException], ...] = (RPCError,)
"""Temporal answered a request with an error status."""
COULD_NOT_CARRY_OUT: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresError, RPCError, RuntimeError)
"""What a one-shot command (`starter.py notices ...`) reports as "could not be carried out"
(exit 1): unreachable servers, refused statements, Temporal errors."""
