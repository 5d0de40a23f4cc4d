"""Who may call what: a bearer credential proves an identity, and each route names its scopes.

A scope token (the scheduling system's, an auditor's, a shared clinician token) admits a
kind of caller. A decision needs more: a clinician's own credential (their token, or an
OIDC access token whose subject maps to them) whose clinician is on the roster in force;
the decision is recorded as theirs, with how they were authenticated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from missed_session.api.errors import ApiError
from missed_session.api.tokens import Identity, Scope, TokenCheck
from missed_session.application.results import ResultKind
from missed_session.application.service import Application

BEARER = HTTPBearer(auto_error=False, description="a token from `starter.py new-token` "
                    "(or, where configured, a clinician's OIDC access token)")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
Identify = Callable[[str], Awaitable[Identity | None]]
"""A further way to identify a bearer credential (OIDC access tokens: api/oidc.py)."""


async def identify(request: Request, credential: str) -> Identity | None:
    """The identity `credential` proves: a configured token, else an OIDC access token."""
    tokens: TokenCheck = request.app.state.tokens
    found = tokens.identify(credential)
    if found is not None:
        return found
    oidc: Identify | None = getattr(request.app.state, "oidc", None)
    return None if oidc is None else await oidc(credential)


def require(*scopes: Scope) -> Callable[..., Awaitable[Identity]]:
    """A dependency admitting a credential of one of `scopes`: 401 without one, 403 otherwise."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> Identity:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError(401, "unauthorized", "a bearer token is required", CHALLENGE)
        identity = await identify(request, credentials.credentials)
        if identity is None:
            raise ApiError(401, "unauthorized", "the bearer token is not valid", CHALLENGE)
        if identity.scope not in scopes:
            allowed = " or ".join(s.value for s in scopes)
            raise ApiError(403, "forbidden",
                           f"this needs a {allowed} token, not {identity.scope.value}")
        return identity

    return check


async def clinician(request: Request,
                    identity: Annotated[Identity, Depends(require(Scope.CLINICIAN))],
                    ) -> Identity:
    """A clinician's own credential, for a roster clinician: what a decision needs.

    A shared clinician token names nobody, so it is refused (403); so is the credential of
    someone no longer on the roster in force.
    """
    if identity.clinician_id is None:
        raise ApiError(403, "forbidden", "a decision needs the deciding clinician's own "
                       "token (`starter.py new-token --scope clinician --clinician <id>`); "
                       "a shared clinician token only reads")
    application: Application = request.app.state.application
    on_roster = await application.on_roster(identity.clinician_id)
    if on_roster.kind is ResultKind.UNAVAILABLE:
        raise ApiError(503, "unavailable", on_roster.message)
    if on_roster.kind is not ResultKind.APPLIED:
        raise ApiError(403, "forbidden", f"the token's clinician {identity.clinician_id} is "
                       "not on the roster in force")
    return identity


SCHEDULER = Depends(require(Scope.SCHEDULER))
"""The scheduling system's routes (also the standards' FHIR and HL7 routes)."""
CLINICIAN = Annotated[Identity, Depends(clinician)]
"""The authenticated clinician a decision is recorded for."""
