"""Reading from an EHR's FHIR server as a SMART Backend Services client.

SMART Backend Services (HL7 SMART App Launch 2.x, "backend services"): the service is a
registered client with a key pair; for an access token it posts a `client_credentials`
grant to the server's token endpoint, authenticating with a JWT it signs itself (RFC 7523
`client_assertion`, `iss` = `sub` = client id, `aud` = the token endpoint, a fresh `jti`,
at most five minutes to live, RS384 or ES384 with the key's `kid`). The token endpoint is
configured or discovered from `<base>/.well-known/smart-configuration`. Tokens are kept
until shortly before they expire.

Without a client id the configured static `Authorization` header (if any) is sent instead,
for servers that hand out a long-lived token.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
"""How long one request to the EHR may take."""
ASSERTION_LIFETIME = 300
"""Seconds a client assertion is valid (the specification's maximum)."""
EXPIRY_MARGIN = 30
"""A token is renewed this many seconds before it expires."""
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class FhirReadError(Exception):
    """A read from the EHR failed; `transient` when trying again later may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class BackendClient:
    """How this service is registered with the EHR."""

    client_id: str
    """The client id the EHR gave this service."""
    private_key_pem: str
    """The private key (PEM) whose public half the EHR holds (RSA or EC P-384)."""
    key_id: str | None = None
    """The key's `kid` in the JWK set the EHR holds."""
    token_url: str | None = None
    """The token endpoint; discovered from the base's smart-configuration when None."""
    scope: str = "system/Patient.read system/RelatedPerson.read system/Appointment.read"
    """The scopes asked for."""


def client_assertion(client: BackendClient, token_url: str, now: float) -> str:
    """The signed JWT that authenticates a token request (RFC 7523)."""
    key = load_pem_private_key(client.private_key_pem.encode(), password=None)
    algorithm = "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384"
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": token_url,
              "exp": int(now) + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex}
    headers = {"typ": "JWT", **({"kid": client.key_id} if client.key_id else {})}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


class FhirReader:
    """GETs resources from one FHIR base, authorised as configured."""

    def __init__(self, base_url: str, *, client: BackendClient | None = None,
                 authorization: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._authorization = authorization
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    def url(self, reference: str) -> str | None:
        """The absolute URL of a reference, only under this base (None otherwise).

        Never any URL a message names: that would let a sender make this service fetch
        anything.
        """
        if not reference.startswith(("http://", "https://")):
            return f"{self.base_url}/{reference.lstrip('/')}"
        return reference if reference.startswith(f"{self.base_url}/") else None

    async def read(self, reference: str) -> dict[str, Any]:
        """One resource by its reference (relative, or absolute under the base)."""
        url = self.url(reference)
        if url is None:
            msg = "the reference is not under the configured FHIR base"
            raise FhirReadError(msg, transient=False)
        return await self._get(url)

    async def search(self, resource_type: str, **params: str) -> list[dict[str, Any]]:
        """The resources a search finds (the Bundle's `match` entries, first page)."""
        bundle = await self._get(f"{self.base_url}/{resource_type}?{urlencode(params)}")
        return [entry["resource"] for entry in bundle.get("entry") or []
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
                and entry["resource"].get("resourceType") == resource_type
                and (entry.get("search") or {}).get("mode", "match") == "match"]

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            async with aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as session:
                headers = {"Accept": "application/fhir+json"}
                authorization = await self._authorization_header(session)
                if authorization is not None:
                    headers["Authorization"] = authorization
                async with session.get(url, headers=headers) as response:
                    if response.status == 401 and self._client is not None:
                        self._token = None  # revoked or expired early: a new one next time
                    if response.status >= 500 or response.status in {401, 429}:
                        msg = f"the FHIR server answered {response.status}; try again"
                        raise FhirReadError(msg, transient=True)
                    if response.status != 200:
                        msg = f"the FHIR server answered {response.status}"
                        raise FhirReadError(msg, transient=False)
                    found = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            msg = f"cannot read from the FHIR server: {type(error).__name__}"
            raise FhirReadError(msg, transient=True) from None
        if not isinstance(found, dict):
            msg = "the FHIR server's answer is not a JSON resource"
            raise FhirReadError(msg, transient=False)
        return found

    async def _authorization_header(self, session: aiohttp.ClientSession) -> str | None:
        if self._client is None:
            return self._authorization
        async with self._lock:
            if self._token is None or self._token[1] <= time.time():
                self._token = await self._new_token(session, self._client)
            return f"Bearer {self._token[0]}"

    async def _new_token(self, session: aiohttp.ClientSession,
                         client: BackendClient) -> tuple[str, float]:
        token_url = client.token_url or await self._discover(session)
        now = time.time()
        form = {"grant_type": "client_credentials", "scope": client.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(client, token_url, now)}
        async with session.post(token_url, data=form,
                                headers={"Accept": "application/json"}) as response:
            if response.status >= 500 or response.status == 429:
                msg = f"the token endpoint answered {response.status}; try again"
                raise FhirReadError(msg, transient=True)
            if response.status != 200:
                msg = (f"the token endpoint refused this service's credentials "
                       f"({response.status}): check MSR_INTAKE_FHIR_CLIENT_ID and the key")
                raise FhirReadError(msg, transient=True)
            body = await response.json(content_type=None)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            msg = "the token endpoint's answer has no access_token"
            raise FhirReadError(msg, transient=True)
        lifetime = body.get("expires_in")
        seconds = lifetime if isinstance(lifetime, int) and lifetime > 0 else 300
        return token, now + max(seconds - EXPIRY_MARGIN, 1)

    async def _discover(self, session: aiohttp.ClientSession) -> str:
        url = f"{self.base_url}/.well-known/smart-configuration"
        async with session.get(url, headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                msg = (f"no token endpoint: {url} answered {response.status} "
                       "(set MSR_INTAKE_FHIR_TOKEN_URL)")
                raise FhirReadError(msg, transient=response.status >= 500)
            found = await response.json(content_type=None)
        endpoint = found.get("token_endpoint") if isinstance(found, dict) else None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            msg = "the smart-configuration names no token_endpoint"
            raise FhirReadError(msg, transient=False)
        return endpoint
