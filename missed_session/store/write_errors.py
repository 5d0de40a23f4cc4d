"""Which failures of a write will fail again the same way, however often it is retried.

An audit append that fails because of what it carries (a NUL PostgreSQL cannot store in
text or jsonb, a value too long, data the store refuses) fails identically on every retry:
retried forever it leaves the session stuck for good, with no one told. Such a failure
must instead end the retries and surface (an alert, a visible state). Connection loss,
timeouts, deadlocks and a predecessor not yet recorded are passing and stay retryable.
Pure: callers (activities/audit.py) decide what to raise.
"""

from __future__ import annotations

import asyncpg

from missed_session.store.append import AuditConflictError, AuditParentMissingError

_PERMANENT_SQLSTATE_CLASSES = ("22", "23", "42")
"""Data exceptions (22: untranslatable character, NUL in jsonb, value too long, bad
encoding), integrity violations (23) and statement errors (42: a missing column or
privilege, which a retry cannot grant)."""


def is_deterministic(error: BaseException) -> bool:
    """Whether retrying the same write can only fail the same way."""
    if isinstance(error, AuditParentMissingError):
        return False  # the predecessor arrives
    if isinstance(error, (AuditConflictError, ValueError, UnicodeError)):
        return True  # refused by the store, or not encodable at all
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        return state[:2] in _PERMANENT_SQLSTATE_CLASSES
    return False


STORE_FAILURES: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
"""What a store call raises when PostgreSQL is unreachable, goes away mid-statement, or
refuses the write. `OSError` covers connection loss and timeouts (`TimeoutError`,
`ConnectionResetError`); `InternalClientError` is the driver finding its connection in a
state it did not expect, as when the server stops inside a commit ("cannot switch to state
15"): the transaction did not commit, so the request is safe to send again."""


def is_store_failure(error: BaseException) -> bool:
    """Whether `error` came from the store (an outage or a refusal), never a defect of ours.

    Any exception of the driver's own module counts, so that a driver state not named in
    `STORE_FAILURES` is still answered as an outage rather than an internal error.
    """
    return isinstance(error, STORE_FAILURES) or type(error).__module__.startswith("asyncpg")
