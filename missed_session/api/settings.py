"""Settings of the HTTP API, from `MSR_API_*` environment variables.

Kept apart from the service's Settings: a deployment that runs no HTTP API configures
nothing, and the tokens are named for the kind of caller they admit.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from missed_session.api.tokens import CLINICIAN_ID, Scope, is_digest

DEFAULT_MAX_BODY_BYTES = 1_000_000
"""Largest request body (a FHIR bundle or an HL7 batch is bigger than one booking)."""


class ApiSettings(BaseSettings):
    """Where the API listens and who may call it."""

    model_config = SettingsConfigDict(env_prefix="MSR_API_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    """Where the API binds (loopback unless a proxy in front terminates TLS)."""
    port: int = Field(default=8080, ge=0, le=65535)
    """The API's port (0 picks a free one)."""
    tokens: dict[Scope, list[str]] = Field(default_factory=dict)
    """Scope -> SHA-256 digests (`sha256:<hex>`) of the bearer tokens it admits (JSON);
    tokens themselves are never configured, only their digests (`starter.py new-token`)."""
    clinician_tokens: dict[str, list[str]] = Field(default_factory=dict)
    """Roster clinician id -> SHA-256 digests of that clinician's own tokens (JSON;
    `starter.py new-token --scope clinician --clinician <id>`). Only these tokens record
    decisions, always as that clinician; a shared `clinician` token in `tokens` reads only."""
    oidc_issuer: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """An OIDC issuer whose access tokens clinicians may present instead of an API token
    (exact `iss`); needs `oidc_audience` and `oidc_subjects`."""
    oidc_audience: str | None = None
    """The `aud` an access token must name to be accepted here."""
    oidc_jwks_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """The issuer's key set; unset: discovered from the issuer's openid-configuration."""
    oidc_subjects: dict[str, str] = Field(default_factory=dict)
    """Token subject (`sub`) -> roster clinician id (JSON): only mapped subjects act."""
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """The API's address as the SMS provider calls it (e.g. behind a proxy); Twilio signs
    the full URL, so its webhook is checked against this when set."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1_000, le=20_000_000)
    """Largest request body; a larger one is refused with 413 before it is read."""

    @field_validator("tokens")
    @classmethod
    def _digests_only(cls, tokens: dict[Scope, list[str]]) -> dict[Scope, list[str]]:
        for scope, digests in tokens.items():
            for digest in digests:
                if not is_digest(digest):
                    msg = (f"tokens.{scope.value}: each entry must be a digest "
                           "'sha256:<64 hex digits>' (from `starter.py new-token`), not a token")
                    raise ValueError(msg)
        return tokens

    @field_validator("clinician_tokens")
    @classmethod
    def _clinicians_and_digests(cls, tokens: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: set[str] = set()
        for clinician_id, digests in tokens.items():
            if CLINICIAN_ID.fullmatch(clinician_id) is None:
                msg = ("clinician_tokens: each key must be a roster clinician id (letters, "
                       "digits, '.', '_', '@', '-'; at most 64)")
                raise ValueError(msg)
            for digest in digests:
                if not is_digest(digest):
                    msg = (f"clinician_tokens.{clinician_id}: each entry must be a digest "
                           "'sha256:<64 hex digits>' (from `starter.py new-token`), not a token")
                    raise ValueError(msg)
                if digest in seen:
                    msg = f"clinician_tokens.{clinician_id}: a digest is given to two clinicians"
                    raise ValueError(msg)
                seen.add(digest)
        return tokens

    @model_validator(mode="after")
    def _oidc_complete(self) -> ApiSettings:
        if self.oidc_issuer is None:
            if self.oidc_audience or self.oidc_jwks_url or self.oidc_subjects:
                msg = "oidc_audience, oidc_jwks_url and oidc_subjects need oidc_issuer"
                raise ValueError(msg)
            return self
        if not self.oidc_audience or not self.oidc_subjects:
            msg = "oidc_issuer needs oidc_audience and oidc_subjects (subject -> clinician id)"
            raise ValueError(msg)
        for clinician_id in self.oidc_subjects.values():
            if CLINICIAN_ID.fullmatch(clinician_id) is None:
                msg = "oidc_subjects: each value must be a roster clinician id"
                raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _one_holder_per_token(self) -> ApiSettings:
        shared = {digest for digests in self.tokens.values() for digest in digests}
        for clinician_id, digests in self.clinician_tokens.items():
            if shared.intersection(digests):
                msg = (f"clinician_tokens.{clinician_id}: the same digest is also a scope "
                       "token in MSR_API_TOKENS; a clinician's token is theirs alone")
                raise ValueError(msg)
        return self
