"""The codec server: lets the Temporal Web UI show decrypted payloads to those allowed.

The Web UI posts sealed payloads to `<endpoint>/decode` (and `/encode` when a user sends a
signal) and renders what comes back. Every request must carry a secret; no header alone
is enough (an `Origin` header is forged by any local process in one line of curl):

- a programmatic caller sends the configured bearer token (`Authorization: Bearer ...`) to
  `/decode` and `/encode`;
- the Web UI's browser uses an endpoint whose path holds the UI secret
  (`/ui/<secret>/decode`), and must also come from the UI's origin over loopback. The dev
  server's UI has no login and cannot send headers of its own, and its `--ui-codec-endpoint`
  flag would show the secret to every user in the process list; so the endpoint with the
  secret is set in the browser's own Codec Server settings (kept in the browser profile),
  and the dev server is started without a codec endpoint. See docs/security.md.

Anything else gets 401 and no data. A payload that names an unknown key, or does not open
(tampered, or sealed with another key), is answered 422 naming the payload and the reason.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from missed_session.codec.encryption import CodecError
from missed_session.local_secrets import read_or_create

log = structlog.get_logger(__name__)

CodecCall = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
Refusal = Callable[[web.Request], str | None]
"""None when the request is authorised; otherwise why not."""
Authorise = Callable[[web.Request], Awaitable[str | None]]
"""A deployment's own rule, as a refusal (missed_session/codec/auth.py: OIDC access tokens)."""
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
UI_SECRET_FILE = "codec-ui-secret"  # noqa: S105 - a file name
"""Under the data directory: the embedded stack's UI secret when none is configured."""


def _is_loopback(address: str | None) -> bool:
    if address is None:
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _same(given: str, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), (expected or "").encode())


class CodecServer:
    """The HTTP side of the payload codec, with its authorisation rules."""

    def __init__(self, codec: PayloadCodec, *, ui_origins: Collection[str],
                 token: str | None, ui_secret: str | None = None,
                 authorise: Authorise | None = None) -> None:
        self._codec = codec
        self._origins = frozenset(ui_origins)
        self._token = token
        self._ui_secret = ui_secret
        self._authorise = authorise  # when given, the only rule: token and UI secret are off

    def app(self) -> web.Application:
        """The aiohttp application: `/encode`, `/decode`, the UI's, and CORS preflights."""
        app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[errors_by_type])
        if self._authorise is not None:  # a deployment: `/encode` and `/decode`, its rule only
            for name, call in (("encode", self._codec.encode), ("decode", self._codec.decode)):
                app.router.add_post(f"/{name}", self._handler(call, self._authorise))
                app.router.add_route("OPTIONS", f"/{name}", self._preflight)
            return app
        for name, call in (("encode", self._codec.encode), ("decode", self._codec.decode)):
            app.router.add_post(f"/{name}", self._handler(call, self._token_holder))
            app.router.add_post(f"/ui/{{secret}}/{name}", self._handler(call, self._web_ui))
            app.router.add_route("OPTIONS", f"/{name}", self._preflight)
            app.router.add_route("OPTIONS", f"/ui/{{secret}}/{name}", self._preflight)
        return app

    def _token_holder(self, request: web.Request) -> str | None:
        """None when the bearer token is right; else why not."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return "a bearer token is required"
        if not _same(header.removeprefix("Bearer "), self._token):
            return "wrong bearer token"
        return None

    def _web_ui(self, request: web.Request) -> str | None:
        """None when the UI secret is right and the request is the UI's page on loopback."""
        if not _same(request.match_info["secret"], self._ui_secret):
            return "wrong UI secret"
        if request.headers.get("Origin") not in self._origins:
            return "not the Web UI's origin"
        if not _is_loopback(request.remote):
            return "not over loopback"
        return None

    def _cors(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin not in self._origins:
            return {"Vary": "Origin"}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Vary": "Origin",
        }

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=self._cors(request))

    def _handler(self, call: CodecCall, refusal: Refusal | Authorise,
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            headers = self._cors(request)
            why = refusal(request)
            if inspect.isawaitable(why):
                why = await why
            if why is not None:
                return web.json_response({"error": f"unauthorized: {why}"}, status=401,
                                         headers=headers)
            payloads = _parse(await request.read())
            if payloads is None:
                return web.json_response({"error": "body must be Temporal Payloads JSON"},
                                         status=400, headers=headers)
            try:
                result = Payloads(payloads=await call(payloads.payloads))
            except CodecError as error:
                return web.json_response({"error": str(error)}, status=422, headers=headers)
            return web.Response(text=json_format.MessageToJson(result),
                                content_type="application/json", headers=headers)

        return handle


def _parse(body: bytes) -> Payloads | None:
    """The Payloads a body holds, or None for anything else.

    Never an exception: not UTF-8, not JSON, nested too deep or not Payloads is a 400.
    """
    try:
        return json_format.Parse(body.decode("utf-8"), Payloads())
    except (UnicodeDecodeError, json_format.ParseError, ValueError, TypeError,
            RecursionError):
        return None


@web.middleware
async def errors_by_type(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An unexpected failure is 500, logged by its type and route only.

    aiohttp's own error log would print the traceback, whose messages may quote a payload.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as error:
        route = request.match_info.route.resource
        log.error("codec_server_request_failed", error_type=type(error).__name__,
                  route=route.canonical if route is not None else "unmatched")
        return web.json_response({"error": "internal error"}, status=500)


async def start_codec_server(server: CodecServer, *, host: str, port: int) -> web.AppRunner:
    """Serve until the returned runner is cleaned up."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def ui_origins(ui_port: int) -> tuple[str, ...]:
    """The origins the embedded Web UI is reached by."""
    return (f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}")


def embedded_ui_secret(data_dir: Path) -> str:
    """The embedded stack's UI secret: created once in the data directory, owner-only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return read_or_create(data_dir / UI_SECRET_FILE)


def ui_endpoint(*, port: int, secret: str) -> str:
    """What to paste into the Web UI's Codec Server settings (it appends /decode)."""
    return f"http://127.0.0.1:{port}/ui/{secret}"
