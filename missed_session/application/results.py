"""What a use case did, in terms every entry point can map to its own vocabulary.

The CLI maps a result's kind to an exit code, the HTTP API to a status, the HL7 listener to
an ACK code; none of them needs to know how the answer was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from missed_session.domain.models import AuditEvent, SessionState


class ResultKind(StrEnum):
    """The kinds of answer a use case gives."""

    STARTED = "started"
    """A session's workflow was started."""
    ALREADY_SCHEDULED = "already_scheduled"
    """The identical booking already holds the session id; nothing changed."""
    APPLIED = "applied"
    """The message was delivered and accepted (or the query answered)."""
    REFUSED = "refused"
    """Valid input that the session cannot take now (or a different booking under the id)."""
    NOT_FOUND = "not_found"
    """No such session, or it has closed and can take no more messages."""
    BAD_INPUT = "bad_input"
    """Input that is malformed or out of range; nothing was done."""
    UNAVAILABLE = "unavailable"
    """Temporal or PostgreSQL could not be reached (or refused the request); try again."""
    NOT_A_CLINICIAN = "not_a_clinician"
    """An SMS from a number the roster does not know: not a clinician's reply to a notice
    (the inbound route treats it as the client's)."""


class Lifecycle(StrEnum):
    """Where a session's workflow is, as far as a message about it is concerned."""

    RUNNING = "running"
    CLOSED = "closed"
    NONE = "none"


SUCCESSES = frozenset({ResultKind.STARTED, ResultKind.ALREADY_SCHEDULED, ResultKind.APPLIED})
"""The kinds that mean the caller's request is now reflected in the session."""


@dataclass(frozen=True)
class Problem:
    """One bad field of the input: where it is and what is wrong (never its value)."""

    path: tuple[str | int, ...]
    """The field's location, e.g. ("client", "phone"); empty for the input as a whole."""
    message: str
    """What is wrong with it."""

    @property
    def dotted(self) -> str:
        """The path as `client.phone`, or `booking` for the input as a whole."""
        return ".".join(str(part) for part in self.path) or "booking"


@dataclass(frozen=True)
class Result:
    """A use case's answer; `message` is one line fit to show the caller (no PII)."""

    kind: ResultKind
    """What happened."""
    message: str
    """One line saying what happened, naming the session and, on failure, why."""
    session_id: str | None = None
    """The session the request was about, when it named one."""
    differing_fields: tuple[str, ...] = ()
    """For a refused booking: the fields (dotted paths) where it differs from the one held."""
    problems: tuple[Problem, ...] = ()
    """For bad input: every bad field found."""
    state: SessionState | None = None
    """For a status request: where the session is."""
    trail: tuple[AuditEvent, ...] = field(default=())
    """For an audit request: the session's events in order."""
    data: Mapping[str, Any] | None = None
    """For a client-directory request: the entry, export or record id (JSON-ready)."""

    @property
    def ok(self) -> bool:
        """Whether the request is now reflected in the session (started, applied, ...)."""
        return self.kind in SUCCESSES


def bad_input(message: str, problems: tuple[Problem, ...] = (),
              session_id: str | None = None) -> Result:
    """A bad-input result; `message` names the first bad field."""
    return Result(ResultKind.BAD_INPUT, message, session_id=session_id, problems=problems)
