"""OIDC access tokens for the codec server: who may see decrypted payloads in a deployment.

Behind a Web UI that signs users in (OIDC), the UI forwards each user's access token to the
codec server (`TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true`). A payload is decrypted only for a
token that this validator accepts: signed by one of the issuer's published keys (JWKS), by
an asymmetric algorithm, naming the configured issuer and audience, and not expired. Nothing
else counts, in particular not an Origin header, which any local process can forge.

The issuer's keys are fetched once and again when a token names a key id not seen yet (the
provider rotated its keys), at most once per `refresh_interval`, so a flood of forged key
ids cannot turn the codec server into a load generator against the provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
"""Asymmetric only: a shared-secret (HS*) or unsigned (`none`) token is never accepted."""
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub")


class TokenRefusedError(Exception):
    """The token does not authorise decoding; the message says why (never the token)."""


class ProviderUnavailableError(Exception):
    """The issuer's discovery document or key set could not be read."""


@dataclass(frozen=True)
class OidcSettings:
    """What a token must satisfy, and where the keys that sign it are published."""

    issuer: str
    """Exact `iss` value, e.g. `https://login.example.org/realms/practice`."""
    audience: str
    """An `aud` value the token must contain: the API the UI asks its tokens for."""
    jwks_url: str | None = None
    """The key set; None: discovered from `<issuer>/.well-known/openid-configuration`."""
    leeway_seconds: float = 30.0
    """Clock skew tolerated on `exp`, `nbf` and `iat`."""
    refresh_interval_seconds: float = 60.0
    """Shortest time between two fetches of the key set."""


class OidcTokenValidator:
    """Checks access tokens against an OIDC provider's published keys."""

    def __init__(self, settings: OidcSettings) -> None:
        self._settings = settings
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_url = settings.jwks_url
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def validate(self, token: str) -> Mapping[str, Any]:
        """The token's claims if it is acceptable; raises TokenRefusedError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRefusedError("not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRefusedError(f"algorithm {algorithm!r} is not accepted")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefusedError("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRefusedError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRefusedError("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRefusedError("bad signature") from None
        except jwt.InvalidTokenError as error:
            raise TokenRefusedError(f"invalid token: {type(error).__name__}") from None
        return claims

    async def authorise(self, request: web.Request) -> str | None:
        """The codec server's hook: None for a valid bearer token, else why not."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return self._refused("no bearer token")
        try:
            claims = await self.validate(token.strip())
        except TokenRefusedError as refused:
            return self._refused(str(refused))
        except ProviderUnavailableError as error:
            log.warning("codec_request_refused", reason="identity provider unavailable",
                        error=str(error))
            return "identity provider unavailable"
        log.info("codec_request_authorised", subject=claims.get("sub"))
        return None

    @staticmethod
    def _refused(reason: str) -> str:
        log.info("codec_request_refused", reason=reason)
        return reason

    async def _key(self, key_id: object) -> jwt.PyJWK:
        if not isinstance(key_id, str) or not key_id:
            raise TokenRefusedError("token names no key id (kid)")
        key = self._keys.get(key_id)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(key_id)
            if key is None and self._may_refresh():
                await self._refresh()
                key = self._keys.get(key_id)
        if key is None:
            raise TokenRefusedError("signed by a key the issuer does not publish")
        return key

    def _may_refresh(self) -> bool:
        return (self._fetched_at is None
                or time.monotonic() - self._fetched_at >= self._settings.refresh_interval_seconds)

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            if self._jwks_url is None:
                self._jwks_url = await self._discover(http)
            document = await _get_json(http, self._jwks_url)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            key_id = entry.get("kid")
            if not isinstance(key_id, str):
                continue
            try:
                keys[key_id] = jwt.PyJWK(entry)
            except jwt.PyJWKError:
                log.warning("jwks_key_skipped", kid=key_id)
        self._keys = keys

    async def _discover(self, http: aiohttp.ClientSession) -> str:
        issuer = self._settings.issuer.rstrip("/")
        document = await _get_json(http, f"{issuer}/.well-known/openid-configuration")
        if document.get("issuer") != self._settings.issuer:
            msg = (f"discovery document names issuer {document.get('issuer')!r},"
                   f" not {self._settings.issuer!r}")
            raise ProviderUnavailableError(msg)
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            msg = "discovery document has no jwks_uri"
            raise ProviderUnavailableError(msg)
        return jwks_uri


async def _get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with http.get(url) as response:
            if response.status != 200:
                msg = f"{url} answered {response.status}"
                raise ProviderUnavailableError(msg)
            document = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        msg = f"{url}: {type(error).__name__}"
        raise ProviderUnavailableError(msg) from None
    if not isinstance(document, dict):
        msg = f"{url} did not return a JSON object"
        raise ProviderUnavailableError(msg)
    return document
