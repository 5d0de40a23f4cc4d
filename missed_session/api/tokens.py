"""Bearer tokens: made once, configured only as digests, checked in constant time.

A token is 32 random bytes, so a plain SHA-256 digest is as good as a slow password hash
(there is nothing to guess) and lets the check compare digests with `hmac.compare_digest`
against every configured one, never stopping early.

Two kinds of token: a scope token (`MSR_API_TOKENS`) admits a kind of caller (the
scheduling system, an auditor) and names nobody; a clinician's own token
(`MSR_API_CLINICIAN_TOKENS`) admits one roster clinician, and is the only token a decision
can be recorded with: the decision is theirs, whatever the body says. A token is known in
the audit trail by its id, the first 12 hex digits of its digest (`tok-<hex>`): enough to
tell which token acted, nothing towards the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TOKEN_PREFIX = "msr_"  # noqa: S105 (a prefix, not a secret)
"""Tokens start with this, so one pasted into the wrong place is recognisable."""
TOKEN_ID_PREFIX = "tok-"  # noqa: S105 (a prefix, not a secret)
TOKEN_ID_HEX_DIGITS = 12
CLINICIAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
"""A roster clinician id as a token may name it (the roster's ids are of this form)."""


class Scope(StrEnum):
    """The kinds of caller; each token admits exactly one."""

    SCHEDULER = "scheduler"
    """The practice's scheduling system: books, moves, cancels, checks in."""
    CLINICIAN = "clinician"
    """Therapists and supervisors: responses, decisions, reading a session."""
    AUDITOR = "auditor"
    """Compliance: reads sessions and their audit trails, changes nothing."""


class AuthMethod(StrEnum):
    """How a caller proved who they are, as the audit trail records it."""

    API_TOKEN = "api-token"  # noqa: S105 (a name, not a secret)
    """A bearer token of the HTTP API (`tok-<digest prefix>` follows)."""
    CONSOLE_SESSION = "console-session"
    """A signed-in console session (a prefix of its stored token hash follows)."""
    OIDC = "oidc"
    """An OIDC access token (`<subject>@<issuer>` follows)."""


def authenticated_by(method: AuthMethod, reference: str) -> str:
    """What a decision's `authenticated_by` holds: `<method>:<reference>`."""
    return f"{method.value}:{reference}"


@dataclass(frozen=True)
class Identity:
    """Who a request is from, as far as its credential says."""

    scope: Scope
    """The kind of caller the credential admits."""
    reference: str
    """How they were authenticated (`api-token:tok-...`, `oidc:...`): for the audit trail."""
    clinician_id: str | None = None
    """The roster clinician the credential belongs to; None for a shared scope token."""


def new_token() -> str:
    """A fresh bearer token (shown once; only its digest is configured)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The form a token is configured in."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def token_id(token_digest: str) -> str:
    """The token's id in logs and the audit trail (a prefix of its digest)."""
    return TOKEN_ID_PREFIX + token_digest.removeprefix("sha256:")[:TOKEN_ID_HEX_DIGITS]


def is_digest(value: str) -> bool:
    """Whether `value` is a configured digest (and not, by mistake, a token)."""
    return DIGEST.fullmatch(value) is not None


class TokenCheck:
    """Who a presented token belongs to, if anyone."""

    def __init__(self, digests: Mapping[Scope, Sequence[str]],
                 clinicians: Mapping[str, Sequence[str]] | None = None) -> None:
        self._digests: list[tuple[Scope, str | None, bytes]] = [
            (scope, None, value.encode()) for scope, values in digests.items()
            for value in values]
        self._digests += [(Scope.CLINICIAN, clinician_id, value.encode())
                          for clinician_id, values in (clinicians or {}).items()
                          for value in values]

    def identify(self, token: str) -> Identity | None:
        """The identity `token` proves; every digest is compared, in constant time each."""
        presented = digest(token).encode()
        found: Identity | None = None
        for scope, clinician_id, value in self._digests:
            if hmac.compare_digest(presented, value):
                found = Identity(scope, authenticated_by(AuthMethod.API_TOKEN,
                                                         token_id(value.decode())),
                                 clinician_id)
        return found

    def scope_of(self, token: str) -> Scope | None:
        """The scope of `token` (see `identify`)."""
        identity = self.identify(token)
        return None if identity is None else identity.scope
