"""Who may call what: a bearer token admits one scope, and each route names its scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from missed_session.api.errors import ApiError
from missed_session.api.tokens import Scope, TokenCheck

BEARER = HTTPBearer(auto_error=False, description="a token from `starter.py new-token`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(*scopes: Scope) -> Callable[..., Awaitable[Scope]]:
    """A dependency admitting a token of one of `scopes`: 401 without one, 403 otherwise."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> Scope:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError(401, "unauthorized", "a bearer token is required", CHALLENGE)
        tokens: TokenCheck = request.app.state.tokens
        scope = tokens.scope_of(credentials.credentials)
        if scope is None:
            raise ApiError(401, "unauthorized", "the bearer token is not valid", CHALLENGE)
        if scope not in scopes:
            allowed = " or ".join(s.value for s in scopes)
            raise ApiError(403, "forbidden", f"this needs a {allowed} token, not {scope.value}")
        return scope

    return check


SCHEDULER = Depends(require(Scope.SCHEDULER))
"""The scheduling system's routes (also the standards' FHIR and HL7 routes)."""
