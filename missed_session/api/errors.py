"""Every error the API gives is an `Answer` body: no stack trace, no echoed input.

FastAPI's own 422 body repeats the input value of each bad field; here only the field's
path and the problem are returned (a bad phone number is still a phone number).
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from missed_session.api.bodies import Answer, FieldProblem
from missed_session.store.write_errors import is_store_failure

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """An error answer: its status and body."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.answer = Answer(kind=kind, message=message)
        self.headers = headers


def _path(location: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "path", "query", "header"}:
        parts = parts[1:] if len(parts) > 1 else parts
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into an `Answer`."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.answer.model_dump(), status_code=error.status,
                            headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [FieldProblem(path=_path(tuple(item.get("loc", ()))),
                                 message=str(item.get("msg", "invalid")).removeprefix(
                                     "Value error, "))
                    for item in error.errors()]
        first = problems[0] if problems else FieldProblem(path="body", message="invalid")
        answer = Answer(kind="bad_input", message=f"{first.path}: {first.message}",
                        problems=problems)
        return JSONResponse(answer.model_dump(), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 400:  # FastAPI: a body that is not even text (bad UTF-8)
            answer = Answer(kind="bad_input", message="body: not valid JSON text",
                            problems=[FieldProblem(path="body",
                                                   message="not valid JSON text")])
            return JSONResponse(answer.model_dump(), status_code=422)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
        answer = Answer(kind=kind, message=str(error.detail))
        return JSONResponse(answer.model_dump(), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        if is_store_failure(error):  # a store error no use case caught: an outage
            log.warning("http api store failure", error_type=type(error).__name__)
            answer = Answer(kind="unavailable", message="the database is unavailable "
                            "(it is safe to send again)")
            return JSONResponse(answer.model_dump(), status_code=503,
                                headers={"Retry-After": "5"})
        # Logged by type only: the message of an arbitrary error may carry health data.
        log.error("http api request failed", error_type=type(error).__name__)
        answer = Answer(kind="error", message="internal error; the request may not have "
                        "been applied (it is safe to send again)")
        return JSONResponse(answer.model_dump(), status_code=500)


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413, before the app sees any of it.

    A declared length over the limit is refused unread; otherwise the body is read (up to
    the limit, so at most `limit` bytes are ever held) and handed on whole.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count what actually arrives."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        parts: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            parts.append(message.get("body", b""))
            received += len(parts[-1])
            if received > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": b"".join(parts), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = Answer(kind="too_large",
                      message=f"request body larger than {self.limit:,} bytes"
                      ).model_dump_json().encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
