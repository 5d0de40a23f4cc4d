"""No health data in any log (issue 24, item 6).

Every route of the HTTP API (sessions, decisions, inbound texts, standards intake, console),
the codec server and the MLLP listener are sent canary values (a client's name, phone,
email, a note, an SMS text), in good requests and in malformed ones (bad UTF-8, bad JSON,
wrong types, unknown fields, deep nesting, dates out of range), and in requests whose use
case raises with the canary in its message (a plain error, and pydantic's, which carries
`input_value`). All log output, at DEBUG, is captured twice: the project's log stream,
and the process's stderr and stdout at the file-descriptor level (where a server that
installs its own handlers, as uvicorn does by default, would write). No canary may appear.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import httpx
import pytest
import structlog
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment
from twilio.request_validator import RequestValidator

from activities.outreach import Sender
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.channels import webhook
from missed_session.codec.encryption import EncryptionCodec, parse_key
from missed_session.codec.server import CodecServer, start_codec_server
from missed_session.config import Settings
from missed_session.domain.models import Cancellation
from missed_session.intake import mllp
from missed_session.intake.service import StandardsIntake, build
from missed_session.intake.settings import IntakeSettings
from missed_session.log_setup import configure_logging
from tests.support.console import ROSTER, load
from tests.support.factories import booking_data, daytime
from tests.support.intake_stack import CALCOM_SECRET, END_BLOCK, START_BLOCK
from tests.support.servers import TEST_KEYS
from up import other_routers
from worker import new_worker

NAME = "Zephyrinecanary"
PHONE = "+14155559876"
EMAIL = "zephyrine.canary@example.org"
NOTE = "canarynote felt hopeless all week"
SMS = "canarysms im not ok please call"
CANARIES = (NAME, PHONE, PHONE.removeprefix("+"), EMAIL, NOTE, SMS)
TWILIO_TOKEN = "twilio-test-auth-token"
WEBHOOK_SECRET = "webhook-test-secret"


@pytest.fixture
def log_stream(capfd: pytest.CaptureFixture[str]) -> Iterator[io.StringIO]:
    """The project's logging at DEBUG into a buffer; put back afterwards.

    After `capfd`, so that the servers started later write their own stderr into it.
    """
    del capfd
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    quiet = [logging.getLogger(name) for name in ("httpx", "httpcore")]  # the test's client
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    yield stream
    for logger, was in zip(quiet, levels, strict=True):
        logger.setLevel(was)
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def canary_body() -> dict[str, Any]:
    """Every field a route might take, each carrying a canary where it is free text."""
    return {"session_id": "s-canary", "therapist_id": "t-ana", "start": "2026-12-09T10:00:00Z",
            "client": {"ref": "c-canary", "first_name": NAME, "phone": PHONE, "email": EMAIL,
                       "time_zone": "America/New_York"},
            "note": NOTE, "reason": NOTE, "legal_basis": NOTE, "body": SMS, "from": PHONE,
            "id": "m-canary", "channel": "text", "responder": NAME, "clinician_id": "t-ana"}


def malformed_bodies() -> list[tuple[bytes, str]]:
    """Bodies that fail to parse or validate, each with canaries inside."""
    good = canary_body()
    return [
        (b"\xff\xfe" + NAME.encode() + b" \xc3\x28 " + PHONE.encode(), "application/json"),
        (json.dumps(good).encode()[:-7], "application/json"),
        (json.dumps({**good, "client": {**good["client"], "phone": 4155559876},
                     "start": f"{NAME} {PHONE}", "risk_tier": EMAIL, NOTE: SMS}).encode(),
         "application/json"),
        (json.dumps({**good, "start": "9999-12-31T23:59:59-05:00"}).encode(),
         "application/json"),
        (b'{"note": "' + NOTE.encode() + b'", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
         "application/json"),
        (json.dumps([NAME, PHONE, {"body": SMS}]).encode(), "application/json"),
        (f"Body={SMS}&From={PHONE}&clinician_id={NAME}&password={NOTE}".encode(),
         "application/x-www-form-urlencoded"),
        (f"MSH|^~\\&|X|Y|||20261201||SIU^S12|{NAME}|P|2.5\rPID|1||{PHONE}||{NAME}".encode(),
         "text/plain"),
        (b"\x00\x01" + SMS.encode("utf-16"), "application/fhir+json"),
    ]


def assert_no_canary(*outputs: str) -> None:
    for output in outputs:
        for canary in CANARIES:
            at = max(output.find(canary) - 600, 0)
            assert canary not in output, f"{canary!r} reached a log: ...{output[at:at + 1200]}"


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
                log_stream: io.StringIO) -> AsyncIterator[tuple[Any, str, dict[str, str], int]]:
    """The API as `dev.py up` serves it (sessions, inbound, console, standards) and the
    MLLP listener, with a worker behind them."""
    del log_stream
    client = time_skipping_env.client
    await load(pool, ROSTER)
    tokens = {scope.value: new_token() for scope in Scope}
    tokens["t-ana"] = new_token()
    api_settings = ApiSettings(
        tokens={scope: [digest(tokens[scope.value])] for scope in Scope},
        clinician_tokens={"t-ana": [digest(tokens["t-ana"])]})
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS,
                        twilio_auth_token=TWILIO_TOKEN, webhook_secret=WEBHOOK_SECRET)
    intake_settings = IntakeSettings(time_zone="America/Los_Angeles", country_code="1",
                                     calcom_secret=CALCOM_SECRET)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(settings, client=client, pool=pool) as application:
        intake = build(application, intake_settings)
        api = create_app(application, api_settings, other_routers(application, intake))
        listener = await mllp.serve(intake, "127.0.0.1", 0)
        try:
            async with ApiServer(api) as server:
                yield api, server.url, tokens, listener.sockets[0].getsockname()[1]
        finally:
            listener.close()
            await listener.wait_closed()


CONSOLE_ROUTES = [("GET", "/console"), ("GET", "/console/sign-in"),
                  ("POST", "/console/sign-in"), ("POST", "/console/sign-out"),
                  ("GET", "/console/notices"), ("GET", "/console/notices/live"),
                  ("POST", "/console/notices/ack"), ("POST", "/console/notices/resolve"),
                  ("GET", "/console/sessions"), ("GET", "/console/sessions/{session_id}"),
                  ("GET", "/console/sessions/{session_id}/live"),
                  ("POST", "/console/sessions/{session_id}/decide"), ("GET", "/console/board"),
                  ("GET", "/console/board/live"), ("GET", "/console/static/{name}")]
"""The console's routes (left out of the OpenAPI document)."""


def every_route(api: Any) -> list[tuple[str, str]]:
    """(method, path) of every route: the OpenAPI document's and the console's."""
    document = api.openapi()
    return [(method.upper(), path) for path, item in document["paths"].items()
            for method in item] + CONSOLE_ROUTES


def _path(path: str, session_id: str) -> str:
    return (path.replace("{session_id}", session_id).replace("{kind}", "add_note")
            .replace("{action}", "ack").replace("{name}", NAME))


async def test_no_canary_reaches_any_log(
    stack: tuple[Any, str, dict[str, str], int], log_stream: io.StringIO,
    time_skipping_env: WorkflowEnvironment, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, url, tokens, mllp_port = stack
    start = daytime(max(datetime.now(UTC), await time_skipping_env.get_current_time())
                    + timedelta(days=1))
    booking = booking_data(start=start.isoformat())
    booking["client"].update(first_name=NAME, phone=PHONE)
    session_id = booking["session_id"]
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        scheduler = {"Authorization": f"Bearer {tokens['scheduler']}"}
        ana = {"Authorization": f"Bearer {tokens['t-ana']}"}
        booked = await http.post("/sessions", json=booking, headers=scheduler)
        assert booked.status_code == 201, booked.text
        good = [
            ("/sessions/{id}/responded", {"channel": "call", "responder": NAME, "note": NOTE},
             scheduler),
            ("/sessions/{id}/decisions/add_note", {"reason": NOTE}, ana),
            ("/sessions/{id}/reschedule", {"start": (start + timedelta(hours=1)).isoformat(),
                                           "reason": NOTE}, scheduler),
        ]
        for path, data, headers in good:
            answer = await http.post(path.replace("{id}", session_id), json=data,
                                     headers=headers)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        # Every route, every malformed body, with each kind of credential.
        routes = every_route(api)
        assert len(routes) >= 30
        bodies = [(json.dumps(canary_body()).encode(), "application/json"),
                  *malformed_bodies()]
        for method, path in routes:
            for body, content_type in bodies:
                for headers in (scheduler, ana, {}):
                    answer = await http.request(
                        method, _path(path, session_id), content=body,
                        params={"q": NAME, "v": PHONE},
                        headers={**headers, "content-type": content_type,
                                 "X-Canary": EMAIL, "Cookie": f"msr_session={NOTE}"})
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    assert answer.status_code < 500 or answer.status_code == 503, (
                        path, answer.status_code, answer.text[:300])

        # Signed inbound texts with an SMS canary (good signatures, and bad ones).
        text = json.dumps({"from": PHONE, "body": SMS, "id": "m-canary-1"}).encode()
        timestamp = str(int(time.time()))
        signed = await http.post("/inbound/webhook", content=text, headers={
            "content-type": "application/json", webhook.TIMESTAMP_HEADER: timestamp,
            webhook.SIGNATURE_HEADER: webhook.sign(WEBHOOK_SECRET.encode(), timestamp, text)})
        assert signed.status_code == 200, signed.text
        params = {"From": PHONE, "To": "+15555550100", "Body": SMS, "MessageSid": "SMcanary",
                  "AccountSid": "AC123"}
        full = f"{url}/inbound/twilio"
        twilio = await http.post(full, content=urlencode(params), headers={
            "content-type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(full,
                                                                                     params)})
        assert twilio.status_code == 200, twilio.text

        # Use cases that raise with the canary in their message: a 500, logged by type.
        async def raises_plainly(*_: object, **__: object) -> object:
            raise ValueError(f"client {NAME} at {PHONE}: {NOTE}")

        async def raises_validation(*_: object, **__: object) -> object:
            return Cancellation.model_validate({"reason": SMS * 20, "x": EMAIL})

        monkeypatch.setattr(Application, "respond", raises_plainly)
        monkeypatch.setattr(Application, "cancel", raises_validation)
        crashed = await http.post(f"/sessions/{session_id}/responded", headers=scheduler,
                                  json={"channel": "call", "note": NOTE})
        assert crashed.status_code == 500
        assert crashed.json() == {**crashed.json(), "kind": "error"}
        with pytest.raises(ValidationError):
            await raises_validation()
        crashed = await http.post(f"/sessions/{session_id}/cancel", headers=scheduler,
                                  json={"reason": NOTE})
        assert crashed.status_code == 500
        assert_no_canary(crashed.text)

    await _codec_server(log_stream)
    await _mllp(mllp_port, monkeypatch)
    await asyncio.sleep(0.5)  # let the servers' own loggers write
    logged = log_stream.getvalue()
    captured = capfd.readouterr()
    assert "http_api_request_failed" in logged or "http api request failed" in logged
    assert "ValueError" in logged
    assert_no_canary(logged, captured.err, captured.out)
    assert statuses.get(200, 0) >= 3, statuses


async def _codec_server(log_stream: io.StringIO) -> None:
    codec = EncryptionCodec({k: parse_key(k, v) for k, v in TEST_KEYS.items()}, "test-key-1")
    token = "codec-test-token"
    runner = await start_codec_server(
        CodecServer(codec, ui_origins=(), token=token), host="127.0.0.1", port=0)
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            bodies = [
                b"\xff\xfe" + NAME.encode() + b"\xc3\x28" + PHONE.encode(),
                b'{"payloads": [{"metadata": {"encoding": "' + NAME.encode() + b'"',
                json.dumps({"payloads": [{"metadata": {"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="},
                                          "data": "Y2FuYXJ5"}]}).encode(),
                json.dumps({"payloads": NAME}).encode(),
                b'{"payloads": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                json.dumps([SMS, PHONE]).encode(),
            ]
            for index, body in enumerate(bodies):
                for path in ("/decode", "/encode"):
                    async with http.post(f"http://127.0.0.1:{port}{path}", data=body, headers={
                            "Authorization": f"Bearer {token}",
                            "content-type": "application/json"}) as answer:
                        text = await answer.text()
                        undecodable = index != 2  # the third is Payloads, not sealed
                        assert answer.status == 400 if undecodable else answer.status < 500, (
                            path, answer.status, text)
                        if answer.status != 200:  # an encoded payload is sealed data
                            assert_no_canary(text)
    finally:
        await runner.cleanup()
    del log_stream


async def _mllp(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    message = (f"MSH|^~\\&|X|Y|||20261201||SIU^S12|CTRL1|P|2.5\rPID|1||c-1||{NAME}||||||"
               f"|||{PHONE}\rNTE|1||{NOTE}\r").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(NAME.encode() + END_BLOCK)  # bytes outside a frame
    await writer.drain()
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(START_BLOCK + message + END_BLOCK)
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(END_BLOCK), 30)
    writer.close()

    async def raises(*_: object, **__: object) -> object:
        raise ValueError(f"{NAME} {PHONE} {NOTE}")

    monkeypatch.setattr(StandardsIntake, "hl7", raises)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(START_BLOCK + message + END_BLOCK)
    await writer.drain()
    # An unforeseen failure is still answered (AR "send it again", issue 23), by type only.
    answer = await asyncio.wait_for(reader.readuntil(END_BLOCK), 30)
    assert b"MSA|AR|CTRL1" in answer
    assert_no_canary(answer.decode(errors="replace"))
    writer.close()
