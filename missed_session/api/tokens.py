"""Bearer tokens: made once, configured only as digests, checked in constant time.

A token is 32 random bytes, so a plain SHA-256 digest is as good as a slow password hash
(there is nothing to guess) and lets the check compare digests with `hmac.compare_digest`
against every configured one, never stopping early.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from enum import StrEnum

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TOKEN_PREFIX = "msr_"  # noqa: S105 (a prefix, not a secret)
"""Tokens start with this, so one pasted into the wrong place is recognisable."""


class Scope(StrEnum):
    """The kinds of caller; each token admits exactly one."""

    SCHEDULER = "scheduler"
    """The practice's scheduling system: books, moves, cancels, checks in."""
    CLINICIAN = "clinician"
    """Therapists and supervisors: responses, decisions, reading a session."""
    AUDITOR = "auditor"
    """Compliance: reads sessions and their audit trails, changes nothing."""


def new_token() -> str:
    """A fresh bearer token (shown once; only its digest is configured)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The form a token is configured in."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def is_digest(value: str) -> bool:
    """Whether `value` is a configured digest (and not, by mistake, a token)."""
    return DIGEST.fullmatch(value) is not None


class TokenCheck:
    """Which scope a presented token holds, if any."""

    def __init__(self, digests: Mapping[Scope, Sequence[str]]) -> None:
        self._digests = [(scope, value.encode()) for scope, values in digests.items()
                         for value in values]

    def scope_of(self, token: str) -> Scope | None:
        """The scope of `token`; every digest is compared, in constant time each."""
        presented = digest(token).encode()
        found: Scope | None = None
        for scope, value in self._digests:
            if hmac.compare_digest(presented, value):
                found = scope
        return found
