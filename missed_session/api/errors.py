"""Every error the API gives is an `Answer` body: no stack trace, no echoed input.

FastAPI's own 422 body repeats the input value of each bad field; here only the field's
path and the problem are returned (a bad phone number is still a phone number).
"""

from __future__ import annotations

import re

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from missed_session.api.bodies import Answer, FieldProblem
from missed_session.store.write_errors import is_store_failure

log = structlog.get_logger(__name__)

MAX_JSON_DEPTH = 64
"""Deepest JSON nesting a body may have (a FHIR bundle needs about a dozen levels); deeper
is refused before any parser recurses into it (Python's `json` raises RecursionError at
about a thousand, which used to be a 500 on the routes that parse signed bodies)."""
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body`, read as JSON, nests arrays and objects more than `limit` deep.

    Brackets inside strings do not count; a body that is not JSON at all is left to its
    parser (this only keeps a parser from recursing too deep).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if bracket.group() in {b"[", b"{"}:
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(depth - 1, 0)
    return False


def _looks_like_json(scope: Scope, body: bytes) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type" and b"json" in value.lower():
            return True
    return body.lstrip()[:1] in {b"{", b"["}


class ApiError(Exception):
    """An error answer: its status and body."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.answer = Answer(kind=kind, message=message)
        self.headers = headers


def route_of(scope: Scope) -> str:
    """The matched route's template (`/sessions/{session_id}/cancel`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class LastResort:
    """The outermost layer: an error that escapes the app ends here, not in the server.

    Starlette answers an unexpected error (through `install`'s handler, which logs its type)
    and then raises it again for the server to log, and uvicorn logs it with its traceback,
    whose messages may quote the request. Here it is swallowed once answered, or answered
    500 and logged by type and route if nothing answered it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; keep what escapes from the server's log."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as error:
            if started:
                return  # answered, and logged by type by the app's handler
            log.error("http api request failed", error_type=type(error).__name__,
                      method=scope.get("method"), route=route_of(scope))
            body = Answer(kind="error", message="internal error").model_dump_json().encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


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
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        if is_store_failure(error):  # a store error no use case caught: an outage
            log.warning("http api store failure", error_type=type(error).__name__,
                        method=request.method, route=route_of(request.scope))
            answer = Answer(kind="unavailable", message="the database is unavailable "
                            "(it is safe to send again)")
            return JSONResponse(answer.model_dump(), status_code=503,
                                headers={"Retry-After": "5"})
        # Logged by type and route only: the message of an arbitrary error (a pydantic
        # error's `input_value`, a parser's excerpt) may carry health data.
        log.error("http api request failed", error_type=type(error).__name__,
                  method=request.method, route=route_of(request.scope))
        answer = Answer(kind="error", message="internal error; the request may not have "
                        "been applied (it is safe to send again)")
        return JSONResponse(answer.model_dump(), status_code=500)


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413, before the app sees any of it.

    A declared length over the limit is refused unread; otherwise the body is read (up to
    the limit, so at most `limit` bytes are ever held) and handed on whole. A JSON body
    nested deeper than `MAX_JSON_DEPTH` is refused 422 here too, so every route (the
    signed ones, which parse their bodies themselves, among them) is spared it.
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
        body = b"".join(parts)
        if _looks_like_json(scope, body) and too_deep(body):
            await self._refuse(send, 422, Answer(
                kind="bad_input", message=f"body: nested more than {MAX_JSON_DEPTH} levels "
                "deep", problems=[FieldProblem(
                    path="body", message=f"nested more than {MAX_JSON_DEPTH} levels deep")]))
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, status: int = 413, answer: Answer | None = None,
                      ) -> None:
        answer = answer or Answer(kind="too_large",
                                  message=f"request body larger than {self.limit:,} bytes")
        body = answer.model_dump_json().encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
