"""The session routes: book, check in, cancel, reschedule, respond, decide, read.

Each route parses the request, calls one use case and maps its result kind to a status;
nothing here talks to Temporal or PostgreSQL.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import JSONResponse

from missed_session.api.auth import CLINICIAN, require
from missed_session.api.bodies import (
    Answer,
    AuditView,
    BookingBody,
    DecisionBody,
    FieldProblem,
    SessionView,
)
from missed_session.api.errors import ApiError
from missed_session.api.tokens import Scope
from missed_session.application import limits
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application
from missed_session.domain.models import (
    SESSION_ID,
    Cancellation,
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    Reschedule,
)

STATUS = {
    ResultKind.STARTED: 201,
    ResultKind.ALREADY_SCHEDULED: 200,
    ResultKind.APPLIED: 200,
    ResultKind.REFUSED: 409,
    ResultKind.NOT_FOUND: 404,
    ResultKind.BAD_INPUT: 422,
    ResultKind.UNAVAILABLE: 503,
}
"""Every result kind's HTTP status."""

SessionIdPath = Annotated[str, Path(pattern=SESSION_ID.pattern, min_length=1, max_length=64,
                                    description="the scheduling system's session id")]
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Answer, "description": description} for status, description in {
        401: "no bearer token, or not a valid one",
        403: "a token of another scope; for a decision, not a roster clinician's own "
             "credential, or a body naming someone else",
        404: "no such session, or it has closed", 413: "request body too large",
        422: "bad input: each bad field's path", 503: "Temporal or PostgreSQL unreachable",
    }.items()}
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": Answer, "description": "refused by the session, with the reason"}}


def application(request: Request) -> Application:
    """The application the server was built with."""
    app: Application = request.app.state.application
    return app


App = Annotated[Application, Depends(application)]


def answer(result: Result) -> JSONResponse:
    """The result as an `Answer` with its status (202 for a client's message kept sending)."""
    kept = result.data is not None and result.data.get("delivery") == "kept"
    return JSONResponse(Answer.of(result).model_dump(),
                        status_code=202 if kept else STATUS[result.kind])


def _failed(result: Result) -> ApiError:
    return ApiError(STATUS[result.kind], result.kind.value, result.message)


def _not_yours(clinician_id: str) -> ApiError:
    message = (f"clinician_id: the token is {clinician_id}'s; a decision is recorded as the "
               "authenticated clinician's, never as someone else's (leave clinician_id out)")
    error = ApiError(403, "forbidden", message)
    error.answer = error.answer.model_copy(update={"problems": [
        FieldProblem(path="clinician_id", message=message.split(": ", 1)[1])]})
    return error


def router() -> APIRouter:
    """The /sessions routes."""
    routes = APIRouter(prefix="/sessions", tags=["sessions"], responses=ERRORS)
    scheduler = [Depends(require(Scope.SCHEDULER))]
    staff = [Depends(require(Scope.SCHEDULER, Scope.CLINICIAN))]
    readers = [Depends(require(Scope.SCHEDULER, Scope.CLINICIAN, Scope.AUDITOR))]
    auditors = [Depends(require(Scope.CLINICIAN, Scope.AUDITOR))]

    @routes.post("", dependencies=scheduler, status_code=201, response_model=Answer,
                 summary="Book a session (idempotent on its session id)",
                 responses={200: {"model": Answer, "description": "the identical booking "
                                  "is already scheduled"},
                            409: {"model": Answer, "description": "a different booking holds "
                                  "the id: `differing_fields` names the fields"}})
    async def book(request: Request, booking: BookingBody, app: App) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.MAX_BOOKING_BYTES:
            raise ApiError(413, "too_large",
                           f"a booking is at most {limits.MAX_BOOKING_BYTES:,} bytes")
        return answer(await app.schedule(booking.model_dump(exclude_unset=True)))

    @routes.post("/{session_id}/check-in", dependencies=scheduler, response_model=Answer,
                 responses=REFUSED, summary="The client arrived or joined")
    async def check_in(session_id: SessionIdPath, app: App,
                       body: Annotated[CheckIn | None, Body()] = None) -> JSONResponse:
        return answer(await app.check_in(session_id, body or CheckIn()))

    @routes.post("/{session_id}/cancel", dependencies=scheduler, response_model=Answer,
                 responses=REFUSED, summary="The session will not take place")
    async def cancel(session_id: SessionIdPath, app: App,
                     body: Annotated[Cancellation | None, Body()] = None) -> JSONResponse:
        return answer(await app.cancel(session_id, body or Cancellation()))

    @routes.post("/{session_id}/reschedule", dependencies=scheduler, response_model=Answer,
                 responses=REFUSED, summary="Move the session's start")
    async def reschedule(session_id: SessionIdPath, body: Reschedule,
                         app: App) -> JSONResponse:
        return answer(await app.reschedule(session_id, body))

    @routes.post("/{session_id}/responded", dependencies=staff, response_model=Answer,
                 responses=REFUSED, summary="The client got back in touch")
    async def responded(session_id: SessionIdPath, body: ClientResponse,
                        app: App) -> JSONResponse:
        return answer(await app.respond(session_id, body))

    @routes.post("/{session_id}/decisions/{kind}", response_model=Answer, responses=REFUSED,
                 summary="A clinician's decision: mark_safe, escalate_now, stand_down, add_note",
                 description="Needs the deciding clinician's own token (or OIDC access "
                 "token); the decision is recorded as theirs, with the token's id.")
    async def decide(session_id: SessionIdPath, kind: DecisionKind, body: DecisionBody,
                     app: App, who: CLINICIAN) -> JSONResponse:
        assert who.clinician_id is not None  # CLINICIAN admits only a clinician's own
        if body.clinician_id not in {None, "", who.clinician_id}:
            raise _not_yours(who.clinician_id)
        decision = ClinicianDecision(clinician_id=who.clinician_id, reason=body.reason,
                                     legal_basis=body.legal_basis,
                                     authenticated_by=who.reference)
        return answer(await app.decide(session_id, kind, decision))

    @routes.get("/{session_id}", dependencies=readers, response_model=SessionView,
                summary="Where the session is in the protocol")
    async def status(session_id: SessionIdPath, app: App) -> SessionView:
        result = await app.status(session_id)
        if result.kind is not ResultKind.APPLIED:
            raise _failed(result)
        return SessionView.of(result)

    @routes.get("/{session_id}/audit", dependencies=auditors, response_model=AuditView,
                summary="The session's audit trail")
    async def audit(session_id: SessionIdPath, app: App) -> AuditView:
        result = await app.audit(session_id)
        if result.kind is not ResultKind.APPLIED:
            raise _failed(result)
        return AuditView.of(result)

    _ = (book, check_in, cancel, reschedule, responded, decide, status, audit)
    return routes
