"""The codec server: lets the Temporal Web UI show decrypted payloads to those allowed.

The Web UI posts sealed payloads to `/decode` (and `/encode` when a user sends a signal)
and renders what comes back. Who may ask:

- a programmatic caller with the configured bearer token (`Authorization: Bearer ...`);
- a browser on the Web UI's own origin, over loopback: the embedded stack binds both the UI
  and this server to 127.0.0.1 and its UI has no login, so "someone at this machine, on the
  UI's page" is the strongest statement available there. Behind a UI with login, configure
  the UI to forward its access token and give this server that token instead.

Anything else gets 401 and no data.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Collection, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

CodecCall = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
Authorise = Callable[[web.Request], Awaitable[bool]]
"""A deployment's own rule (missed_session/codec_auth.py: OIDC access tokens)."""
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def _is_loopback(address: str | None) -> bool:
    if address is None:
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class CodecServer:
    """The HTTP side of the payload codec, with its authorisation rules."""

    def __init__(self, codec: PayloadCodec, *, ui_origins: Collection[str],
                 token: str | None, authorise: Authorise | None = None) -> None:
        self._codec = codec
        self._origins = frozenset(ui_origins)
        self._token = token
        self._authorise = authorise  # when given, the only rule: the two above are off

    def app(self) -> web.Application:
        """The aiohttp application: `/encode`, `/decode` and their CORS preflights."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/encode", self._handler(self._codec.encode))
        app.router.add_post("/decode", self._handler(self._codec.decode))
        app.router.add_route("OPTIONS", "/encode", self._preflight)
        app.router.add_route("OPTIONS", "/decode", self._preflight)
        return app

    def authorised(self, request: web.Request) -> bool:
        """Bearer token, or the Web UI's origin over loopback."""
        header = request.headers.get("Authorization", "")
        if self._token and header.startswith("Bearer "):
            return hmac.compare_digest(header.removeprefix("Bearer ").encode(),
                                       self._token.encode())
        return request.headers.get("Origin") in self._origins and _is_loopback(request.remote)

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

    def _handler(self, call: CodecCall) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            headers = self._cors(request)
            allowed = (await self._authorise(request) if self._authorise is not None
                       else self.authorised(request))
            if not allowed:
                return web.json_response({"error": "unauthorized"}, status=401, headers=headers)
            try:
                payloads = json_format.Parse(await request.text(), Payloads())
            except json_format.ParseError:
                return web.json_response({"error": "body must be Temporal Payloads JSON"},
                                         status=400, headers=headers)
            result = Payloads(payloads=await call(payloads.payloads))
            return web.Response(text=json_format.MessageToJson(result),
                                content_type="application/json", headers=headers)

        return handle


async def start_codec_server(server: CodecServer, *, host: str, port: int) -> web.AppRunner:
    """Serve until the returned runner is cleaned up."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def ui_origins(ui_port: int) -> tuple[str, ...]:
    """The origins the embedded Web UI is reached by."""
    return (f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}")
