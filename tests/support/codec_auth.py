"""Helpers first written for tests/test_codec_auth.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "temporal-ui-codec"


@dataclass
class Provider:
    """A local OIDC provider: its issuer URL, published keys, and how often it was asked."""

    issuer: str
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    jwks_requests: int = 0

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[kid] = key
        return key

    def jwks(self) -> dict[str, Any]:
        entries = []
        for kid, key in self.keys.items():
            entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            entries.append({**entry, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": entries}

    def token(self, *, kid: str = "k1", key: rsa.RSAPrivateKey | None = None,
              **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "staff-17", "iat": now,
                "exp": now + 300, **claims}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256",
                          headers={"kid": kid})


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    app = web.Application()
    provider = Provider(issuer="")  # the issuer URL is known once the server listens
    provider.add_key("k1")

    async def discovery(request: web.Request) -> web.Response:
        del request
        return web.json_response({"issuer": provider.issuer,
                                  "jwks_uri": f"{provider.issuer}/certs"})

    async def certs(request: web.Request) -> web.Response:
        del request
        provider.jwks_requests += 1
        return web.json_response(provider.jwks())

    app.router.add_get("/realms/practice/.well-known/openid-configuration", discovery)
    app.router.add_get("/realms/practice/certs", certs)
    runner, url = await _serve(app)
    provider.issuer = f"{url}/realms/practice"
    yield provider
    await runner.cleanup()

