"""A local server that answers like Twilio's REST API, for the Twilio channel's tests.

The official SDK talks to it: its async HTTP client is subclassed only to send requests to
127.0.0.1 instead of api.twilio.com; form encoding, auth, JSON parsing and error handling
are the SDK's. The server checks what Twilio would see, can fail the ways Twilio fails
(4xx, 5xx, a create or a poll that never answers), and posts status callbacks signed the
way Twilio signs them (computed here from Twilio's published algorithm, not with the SDK).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client as TwilioClient

ACCOUNT = "AC" + "0" * 32
TOKEN = "test-only-auth-token"
FROM = "+15555550100"
CALLBACK = "+15555550111"
CLIENT_PHONE = "+14155550123"


class LocalTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's async client, pointed at a local server."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base = urlsplit(base_url)

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        local = urlunsplit((self._base.scheme, self._base.netloc, parts.path, parts.query, ""))
        return await super().request(method, local, *args, **kwargs)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it for a form POST.

    The full URL, then each parameter's name and value appended in name order, signed with
    HMAC-SHA1 under the auth token, base64-encoded (twilio.com/docs/usage/security).
    """
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class FakeTwilio:
    """Answers `Calls.json`, `Calls/<sid>.json` and `Messages.json` in Twilio's REST shape."""

    call_statuses: list[tuple[str, str | None]] = field(
        default_factory=lambda: [("ringing", None), ("completed", "human")]
    )
    """(status, answered_by) returned by successive fetches of a call."""
    error: tuple[int, int] | None = None
    """(HTTP status, Twilio code) to answer every create with."""
    errors: list[tuple[int, int] | None] = field(default_factory=list)
    """Per create, in order, before `error` applies: an (HTTP status, code) or None (ok)."""
    hang_on_create: bool = False
    """Take the create request, then never answer (as if the answer were lost)."""
    hang_on_fetch: bool = False
    """Take each fetch of a call, then never answer."""
    failing_fetches: int = 0
    """How many fetches of a call answer 500 before the statuses are served."""
    on_fetch: Callable[[], Awaitable[None]] | None = None
    """Run as each fetch arrives, before it is answered (a fault to inject)."""
    created: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    """(resource, form fields, Authorization header) of each create."""
    fetched: list[str] = field(default_factory=list)
    """The SID of each fetch served (not the failing or hanging ones)."""

    @property
    def fetches(self) -> int:
        """How many fetches were answered with a status."""
        return len(self.fetched)

    async def create(self, request: web.Request) -> web.Response:
        resource = request.match_info["resource"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.created.append((resource, form, request.headers.get("Authorization", "")))
        if self.hang_on_create:
            await asyncio.sleep(30)
        error = self.errors.pop(0) if self.errors else self.error
        if error is not None:
            status, code = error
            return web.json_response(
                {"code": code, "message": "refused",
                 "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
                status=status)
        prefix = "CA" if resource == "Calls" else "SM"
        sid = f"{prefix}{len(self.created):032d}"
        return web.json_response({
            "sid": sid, "account_sid": ACCOUNT, "to": form["To"], "from": form["From"],
            "status": "queued", "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT}/{resource}/{sid}.json",
            **({"body": form["Body"]} if resource == "Messages" else {}),
        }, status=201)

    async def fetch(self, request: web.Request) -> web.Response:
        if self.on_fetch is not None:
            await self.on_fetch()
        if self.hang_on_fetch:
            await asyncio.sleep(30)
        if self.failing_fetches:
            self.failing_fetches -= 1
            return web.json_response(
                {"code": 20500, "message": "Internal Server Error", "status": 500}, status=500)
        sid = request.match_info["sid"]
        status, answered_by = self.status_now(sid)
        self.fetched.append(sid)
        return web.json_response({
            "sid": sid, "account_sid": ACCOUNT, "status": status, "answered_by": answered_by,
            "to": CLIENT_PHONE, "from": FROM, "api_version": "2010-04-01",
        })

    def status_now(self, sid: str) -> tuple[str, str | None]:
        """What the next fetch of `sid` answers (its fetches so far pick the entry)."""
        seen = self.fetched.count(sid)
        return self.call_statuses[min(seen, len(self.call_statuses) - 1)]

    def created_sid(self, index: int = 0) -> str:
        """The SID the `index`th create was answered with."""
        resource = self.created[index][0]
        return f"{'CA' if resource == 'Calls' else 'SM'}{index + 1:032d}"


async def post_status_callback(url: str, params: dict[str, str], *,
                               auth_token: str = TOKEN, signed_url: str | None = None,
                               signature: str | None = None) -> tuple[int, str]:
    """POST a status callback to `url` the way Twilio does (form-encoded, signed).

    `signed_url` is the URL Twilio signs (the public address it called), `url` by default.
    Returns the answer's status and body.
    """
    sign = signature if signature is not None else twilio_signature(
        auth_token, signed_url or url, params)
    async with aiohttp.ClientSession() as session, session.post(
        url, data=params, headers={"X-Twilio-Signature": sign},
    ) as response:
        return response.status, await response.text()


@asynccontextmanager
async def twilio_server(fake: FakeTwilio) -> AsyncIterator[tuple[TwilioClient,
                                                                 LocalTwilioHttpClient]]:
    """Serve `fake` on a free port; yields an SDK client talking to it (and its HTTP client)."""
    app = web.Application()
    base = f"/2010-04-01/Accounts/{ACCOUNT}"
    app.router.add_post(base + "/{resource}.json", fake.create)
    app.router.add_get(base + "/Calls/{sid}.json", fake.fetch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    http_client = LocalTwilioHttpClient(f"http://127.0.0.1:{port}")
    try:
        yield TwilioClient(ACCOUNT, TOKEN, http_client=http_client), http_client
    finally:
        await http_client.close()
        await runner.cleanup()
