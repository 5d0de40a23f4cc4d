"""What the API answers, as models: the OpenAPI document is generated from these."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from missed_session.application.audit_trail import details
from missed_session.application.results import Result
from missed_session.domain.models import (
    AuditEventType,
    Client,
    ClientRef,
    FreeText,
    Model,
    Outcome,
    SessionBooking,
    SessionStatus,
    TextLine,
)


def _client_or_ref(data: object, handler: ValidatorFunctionWrapHandler) -> Client | ClientRef:
    """A ref alone is a `ClientRef`; anything else is validated as `Client`.

    So that a bad field is named as `client.<field>`, not once per member of the union.
    """
    del handler
    if isinstance(data, Client | ClientRef):
        return data
    if isinstance(data, Mapping) and set(data) == {"ref"}:
        return ClientRef.model_validate(data)
    return Client.model_validate(data)


class BookingBody(SessionBooking):
    """A booking as the API takes it: the client's details, or only their ref.

    A ref alone is completed from the client directory by the application (the same
    resolution for every entry point); the model must let it through to get there.
    """

    client: Annotated[Client | ClientRef,  # type: ignore[assignment]  # widened on purpose
                      WrapValidator(_client_or_ref)]
    """Who is expected: their details, or their ref in the client directory."""


class FieldProblem(BaseModel):
    """One bad field of the request (its value is never echoed: it may be health data)."""

    path: str = Field(description="the field, e.g. `client.phone` or `body` for the whole")
    message: str = Field(description="what is wrong with it")


class Answer(BaseModel):
    """The answer to a request that changes a session, and every error's body."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="started, already_scheduled, applied, refused, not_found, "
                      "bad_input, unavailable, unauthorized, forbidden, too_large, error")
    message: str = Field(description="one line saying what happened and, on failure, why")
    session_id: str | None = None
    differing_fields: list[str] = Field(
        default_factory=list,
        description="for a booking refused under an existing id: the fields that differ")
    problems: list[FieldProblem] = Field(default_factory=list,
                                         description="for bad input: each bad field")

    @classmethod
    def of(cls, result: Result) -> Answer:
        """The answer for a use case's result."""
        return cls(kind=result.kind.value, message=result.message,
                   session_id=result.session_id,
                   differing_fields=list(result.differing_fields),
                   problems=[FieldProblem(path=".".join(str(p) for p in problem.path) or "body",
                                          message=problem.message)
                             for problem in result.problems])


class DecisionBody(Model):
    """A clinician's decision as the API takes it: the clinician is the authenticated one."""

    clinician_id: TextLine | None = Field(
        default=None, max_length=64,
        description="may be left out: the decision is recorded as the clinician the token "
        "belongs to; if given, it must be that clinician (anyone else is refused with 403)")
    reason: FreeText = Field(default="", max_length=500,
                             description="why; required (the note itself for add_note)")
    legal_basis: FreeText = Field(default="", max_length=200,
                                  description="for escalate_now: the legal basis")


class SessionView(BaseModel):
    """Where a session is in the protocol (the workflow's `state` query)."""

    session_id: str
    status: SessionStatus
    attempts_made: int
    next_action: str | None
    next_action_at: datetime | None
    outcome: Outcome | None

    @classmethod
    def of(cls, result: Result) -> SessionView:
        """The view of a status result (which carries the state)."""
        state = result.state
        assert state is not None
        assert result.session_id is not None
        return cls(session_id=result.session_id, status=state.status,
                   attempts_made=state.attempts_made, next_action=state.next_action,
                   next_action_at=state.next_action_at, outcome=state.outcome)


class AuditEventView(BaseModel):
    """One audit event, with its details as its model reads them."""

    sequence: int
    occurred_at: datetime
    event_type: AuditEventType
    details: dict[str, Any]


class AuditView(BaseModel):
    """A session's audit trail, in order."""

    session_id: str
    events: list[AuditEventView]

    @classmethod
    def of(cls, result: Result) -> AuditView:
        """The view of an audit result."""
        assert result.session_id is not None
        return cls(session_id=result.session_id, events=[
            AuditEventView(sequence=event.sequence, occurred_at=event.occurred_at,
                           event_type=event.event_type, details=details(event))
            for event in result.trail])
