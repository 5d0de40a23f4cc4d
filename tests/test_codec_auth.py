"""The deployment's codec server: OIDC access tokens checked against a local provider.

A local aiohttp server plays the identity provider (discovery document and JWKS, the real
wire format); tokens are signed with keys made for the test. The codec server is the real
one over HTTP, with `codec.auth` as its only rule.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import json_format
from structlog.testing import capture_logs
from temporalio.api.common.v1 import Payload, Payloads

from missed_session.codec.auth import OidcSettings, OidcTokenValidator, TokenRefusedError
from missed_session.codec.encryption import EncryptionCodec, new_key, parse_key
from missed_session.codec.server import CodecServer
from missed_session.codec.service import build_app
from missed_session.config import ConfigurationError, load_settings
from tests.support.codec_auth import (
    AUDIENCE,
    Provider,
    _serve,
    provider,  # noqa: F401 - fixtures, used by name
)

CODEC_KEY = new_key()
CODEC = EncryptionCodec({"k": parse_key("k", CODEC_KEY)}, "k")
UI_ORIGIN = "https://temporal.practice.example"


@pytest.fixture
async def codec_url(provider: Provider) -> AsyncIterator[str]:  # noqa: F811
    settings = load_settings(encryption_keys={"k": CODEC_KEY},
                             codec_oidc_issuer=provider.issuer, codec_oidc_audience=AUDIENCE,
                             codec_ui_origins=[UI_ORIGIN])
    runner, url = await _serve(build_app(settings))
    yield url
    await runner.cleanup()


async def _decode(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"first_name":"Robin"}')
    body = json_format.MessageToJson(Payloads(payloads=await CODEC.encode([plain])))
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/decode", data=body, headers=headers) as response:
        return response.status, await response.json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": UI_ORIGIN}


async def test_a_valid_access_token_gets_plaintext(codec_url: str, provider: Provider) -> None:  # noqa: F811
    status, answer = await _decode(codec_url, _bearer(provider.token()))
    assert status == 200
    assert base64.b64decode(answer["payloads"][0]["data"]) == b'{"first_name":"Robin"}'


async def test_no_token_is_refused_even_from_loopback_with_the_ui_origin(
    codec_url: str,
) -> None:
    status, answer = await _decode(codec_url, {"Origin": UI_ORIGIN})
    assert (status, answer) == (401, {"error": "unauthorized: no bearer token"})


@pytest.mark.parametrize(
    "case",
    ["expired", "wrong_audience", "wrong_issuer", "wrong_signature", "unknown_kid",
     "unsigned", "shared_secret", "garbage", "no_subject"],
)
async def test_bad_tokens_are_refused(codec_url: str, provider: Provider, case: str) -> None:  # noqa: F811
    now = int(time.time())
    tokens: dict[str, Callable[[], str]] = {
        "expired": lambda: provider.token(exp=now - 120, iat=now - 600),
        "wrong_audience": lambda: provider.token(aud="another-api"),
        "wrong_issuer": lambda: provider.token(iss="https://evil.example/realms/practice"),
        "wrong_signature": lambda: provider.token(
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "unknown_kid": lambda: provider.token(
            kid="k9", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "unsigned": lambda: jwt.encode(
            {"iss": provider.issuer, "aud": AUDIENCE, "sub": "x", "exp": now + 300},
            key="", algorithm="none", headers={"kid": "k1"}),
        "shared_secret": lambda: jwt.encode(
            {"iss": provider.issuer, "aud": AUDIENCE, "sub": "x", "exp": now + 300},
            key="a-guessable-shared-secret-of-32-bytes!", algorithm="HS256",
            headers={"kid": "k1"}),
        "garbage": lambda: "not.a.token",
        "no_subject": lambda: jwt.encode(
            {"iss": provider.issuer, "aud": AUDIENCE, "exp": now + 300},
            provider.keys["k1"], algorithm="RS256", headers={"kid": "k1"}),
    }
    reasons = {
        "expired": "token expired", "wrong_audience": "wrong audience",
        "wrong_issuer": "wrong issuer", "wrong_signature": "bad signature",
        "unknown_kid": "signed by a key the issuer does not publish",
        "unsigned": "algorithm 'none' is not accepted",
        "shared_secret": "algorithm 'HS256' is not accepted", "garbage": "not a JWT",
        "no_subject": "invalid token: MissingRequiredClaimError",
    }
    with capture_logs() as logs:
        status, answer = await _decode(codec_url, _bearer(tokens[case]()))
    assert (status, answer) == (401, {"error": f"unauthorized: {reasons[case]}"})
    refusals = [entry["reason"] for entry in logs if entry["event"] == "codec_request_refused"]
    assert refusals == [reasons[case]]


async def test_validator_names_why_a_token_is_refused(provider: Provider) -> None:  # noqa: F811
    validator = OidcTokenValidator(OidcSettings(issuer=provider.issuer, audience=AUDIENCE))
    now = int(time.time())
    cases = {
        "token expired": provider.token(exp=now - 120, iat=now - 600),
        "wrong audience": provider.token(aud="another-api"),
        "wrong issuer": provider.token(iss="https://evil.example/"),
        "bad signature": provider.token(
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }
    for reason, token in cases.items():
        with pytest.raises(TokenRefusedError, match=reason):
            await validator.validate(token)
    assert (await validator.validate(provider.token()))["sub"] == "staff-17"


async def test_rotated_keys_are_fetched_once_not_per_forged_kid(provider: Provider) -> None:  # noqa: F811
    validator = OidcTokenValidator(OidcSettings(issuer=provider.issuer, audience=AUDIENCE,
                                                refresh_interval_seconds=3600))
    await validator.validate(provider.token())
    assert provider.jwks_requests == 1
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in ("x1", "x2", "x3"):
        with pytest.raises(TokenRefusedError, match="does not publish"):
            await validator.validate(provider.token(kid=kid, key=forged))
    assert provider.jwks_requests == 1  # within the refresh interval: no refetch

    rotating = OidcTokenValidator(OidcSettings(issuer=provider.issuer, audience=AUDIENCE,
                                               refresh_interval_seconds=0))
    await rotating.validate(provider.token())
    provider.add_key("k2")
    claims = await rotating.validate(provider.token(kid="k2"))
    assert claims["aud"] == AUDIENCE


async def test_plain_codec_server_keeps_its_embedded_rules() -> None:
    """Without a hook, the embedded stack's rules are unchanged (no token: not loopback)."""
    server = CodecServer(CODEC, ui_origins=(UI_ORIGIN,), token="t")

    async def refuse(request: web.Request) -> str | None:
        del request
        return "refused by the hook"

    hooked = CodecServer(CODEC, ui_origins=(UI_ORIGIN,), token="t", ui_secret="s",
                         authorise=refuse)
    runner, url = await _serve(server.app())
    hooked_runner, hooked_url = await _serve(hooked.app())
    try:
        assert (await _decode(url, {"Authorization": "Bearer t"}))[0] == 200
        # With a hook, the shared token no longer opens anything.
        assert await _decode(hooked_url, {"Authorization": "Bearer t"}) == (
            401, {"error": "unauthorized: refused by the hook"})
        # ... and the embedded stack's UI-secret endpoint is not there at all.
        async with aiohttp.ClientSession() as http, \
                http.post(f"{hooked_url}/ui/s/decode", data="{}",
                          headers={"Origin": UI_ORIGIN}) as response:
            assert response.status == 404
    finally:
        await runner.cleanup()
        await hooked_runner.cleanup()


def test_stand_alone_codec_server_needs_an_issuer_and_the_keys() -> None:
    with pytest.raises(ConfigurationError, match="codec_oidc_issuer"):
        build_app(load_settings(encryption_keys={"k": CODEC_KEY}))
    with pytest.raises(ConfigurationError, match="encryption_keys"):
        build_app(load_settings(codec_oidc_issuer="https://id.example/",
                                codec_oidc_audience=AUDIENCE))
