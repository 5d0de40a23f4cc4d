"""The codec server over real HTTP on loopback: who gets decoded payloads, and who not."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from missed_session.codec.encryption import EncryptionCodec, new_key, parse_key
from missed_session.codec.server import CodecServer, start_codec_server, ui_origins

UI_PORT = 8233
TOKEN = "operator-token-for-tests"
UI_SECRET = "ui-secret-for-tests"
CODEC = EncryptionCodec({"k": parse_key("k", new_key())}, "k")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def codec_url() -> AsyncIterator[str]:
    port = free_port()
    server = CodecServer(CODEC, ui_origins=ui_origins(UI_PORT), token=TOKEN,
                         ui_secret=UI_SECRET)
    runner = await start_codec_server(server, host="127.0.0.1", port=port)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def sealed_body() -> str:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"first_name":"Robin"}')
    return json_format.MessageToJson(Payloads(payloads=await CODEC.encode([plain])))


async def post(
    url: str, body: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.json(), dict(r.headers)


def data_of(answer: dict[str, Any]) -> bytes:
    return base64.b64decode(answer["payloads"][0]["data"])


async def test_programmatic_caller_with_the_token_gets_plaintext(codec_url: str) -> None:
    status, answer, _ = await post(
        f"{codec_url}/decode", await sealed_body(), {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    assert data_of(answer) == b'{"first_name":"Robin"}'


async def test_the_web_ui_with_its_secret_over_loopback_gets_plaintext_and_cors(
    codec_url: str,
) -> None:
    origin = f"http://localhost:{UI_PORT}"
    status, answer, headers = await post(
        f"{codec_url}/ui/{UI_SECRET}/decode", await sealed_body(),
        {"Origin": origin, "X-Namespace": "default"},
    )
    assert status == 200
    assert data_of(answer) == b'{"first_name":"Robin"}'
    assert headers["Access-Control-Allow-Origin"] == origin


async def test_a_forged_origin_without_a_secret_gets_401(codec_url: str) -> None:
    """What any local process can send (curl -H 'Origin: ...') opens nothing."""
    for path in ("/decode", "/encode", "/ui/wrong-secret/decode", "/ui/wrong-secret/encode"):
        status, answer, _ = await post(
            f"{codec_url}{path}", await sealed_body(),
            {"Origin": f"http://localhost:{UI_PORT}", "X-Namespace": "default"},
        )
        assert status == 401, path
        assert answer["error"].startswith("unauthorized"), path


async def test_the_ui_secret_needs_the_ui_origin_too(codec_url: str) -> None:
    for headers in ({}, {"Origin": "http://evil.example"}):
        status, answer, _ = await post(f"{codec_url}/ui/{UI_SECRET}/decode",
                                       await sealed_body(), headers)
        assert status == 401
        assert answer == {"error": "unauthorized: not the Web UI's origin"}


async def test_the_ui_secret_is_no_bearer_token(codec_url: str) -> None:
    status, _, _ = await post(f"{codec_url}/decode", await sealed_body(),
                              {"Authorization": f"Bearer {UI_SECRET}"})
    assert status == 401


async def test_unknown_key_and_tampered_ciphertext_are_422_naming_the_payload(
    codec_url: str,
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    sealed = json.loads(await sealed_body())
    plain_first = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                   "data": base64.b64encode(b"1").decode()}
    unknown = json.loads(json.dumps(sealed))
    unknown["payloads"][0]["metadata"]["encryption-key-id"] = base64.b64encode(b"k9").decode()
    status, answer, _ = await post(f"{codec_url}/decode",
                                   json.dumps({"payloads": [plain_first,
                                                            *unknown["payloads"]]}), auth)
    assert status == 422
    assert answer == {"error": "payload 2 is sealed with unknown encryption key 'k9'"}
    data = bytearray(base64.b64decode(sealed["payloads"][0]["data"]))
    data[-1] ^= 1
    sealed["payloads"][0]["data"] = base64.b64encode(bytes(data)).decode()
    status, answer, _ = await post(f"{codec_url}/decode", json.dumps(sealed), auth)
    assert status == 422
    assert "payload 1 does not open with encryption key 'k'" in answer["error"]
    assert "Robin" not in answer["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://evil.example"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer wrong-token", "Origin": f"http://localhost:{UI_PORT}"},
    ],
)
async def test_anyone_else_gets_401_and_no_data(codec_url: str, headers: dict[str, str]) -> None:
    status, answer, response_headers = await post(
        f"{codec_url}/decode", await sealed_body(), headers
    )
    assert status == 401
    assert answer["error"].startswith("unauthorized: ")
    ui_origin = headers.get("Origin") in ui_origins(UI_PORT)
    assert ("Access-Control-Allow-Origin" in response_headers) is ui_origin


async def test_preflight_allows_only_the_ui_origin(codec_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.options(f"{codec_url}/decode",
                                headers={"Origin": f"http://127.0.0.1:{UI_PORT}"}) as ok:
            assert ok.status == 204
            assert "X-Namespace" in ok.headers["Access-Control-Allow-Headers"]
        async with http.options(f"{codec_url}/decode",
                                headers={"Origin": "http://evil.example"}) as other:
            assert "Access-Control-Allow-Origin" not in other.headers


async def test_encode_round_trips_and_bad_bodies_are_named(codec_url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    plain = json_format.MessageToJson(
        Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b"42")])
    )
    status, sealed, _ = await post(f"{codec_url}/encode", plain, auth)
    assert status == 200
    assert data_of(sealed) != b"42"
    status, opened, _ = await post(f"{codec_url}/decode", json.dumps(sealed), auth)
    assert (status, data_of(opened)) == (200, b"42")
    status, error, _ = await post(f"{codec_url}/decode", "not json", auth)
    assert status == 400
    assert "Payloads" in error["error"]
