"""A practice phone system for the webhook channel that does NOT deduplicate.

It speaks the channel's wire format (missed_session/channels/webhook.py): a signed JSON POST
per step. Unlike a well-behaved receiver it acts on every request it accepts, even one with
a key it has seen, and counts each one: a second delivery of a step is a duplicate effect
the fault table reports. Per number it answers as the scripted client would (answers, does
not answer, calls back after a voicemail), and it can hold the next request of a kind open,
so that the harness can kill the worker while that step is in the provider's hands. It can
also refuse chosen steps with a 4xx (never acting on them), or take chosen steps and never
answer (a hung provider): both keep a record of every such request, so that a step sent
again after its refusal, or after the channel gave up waiting, shows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from missed_session.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

CallBack = Callable[[str], Awaitable[None]]
"""Tells the session (by id) that the client called back."""


@dataclass(frozen=True)
class Delivery:
    """One request the receiver acted on."""

    key: str
    session_id: str
    kind: str
    to: str
    at: float


@dataclass
class Hold:
    """Keep the next request of `kind` open for `seconds`; `seen` is set when it arrives."""

    kind: str
    seconds: float
    key_part: str = ""
    """Only a request whose idempotency key contains this (a notice's `/round-1/step-1/`)."""
    seen: asyncio.Event = field(default_factory=asyncio.Event)
    delivery: Delivery | None = None


@dataclass
class PracticeReceiver:
    """Records every delivery and answers per number as the harness scripted it."""

    secret: bytes
    call_back: CallBack
    answers: dict[str, str] = field(default_factory=dict)
    """Number -> `answered` | `no_answer` for calls (unscripted numbers do not answer)."""
    calls_back_after: dict[str, float] = field(default_factory=dict)
    """Number -> seconds after a voicemail at which that client calls back."""
    deliveries: list[Delivery] = field(default_factory=list)
    refused: int = 0
    """Requests whose signature or timestamp did not verify (there should be none)."""
    fail_next: int = 0
    """Answer this many of the next requests with 503, before acting on them (a 5xx)."""
    holds: list[Hold] = field(default_factory=list)
    refuse_steps: tuple[str, ...] = ()
    """Idempotency-key endings (`/attempt-2/call`, `/escalation`) the system refuses with
    HTTP 400 before acting on them: a 4xx, which the channel must never send again."""
    rejections: list[Delivery] = field(default_factory=list)
    """Every request refused by `refuse_steps` (one per request, so a re-send shows)."""
    hang_steps: tuple[str, ...] = ()
    """Key endings the system takes and acts on, and never answers (until `close`)."""
    hung: list[Delivery] = field(default_factory=list)
    """Every request left unanswered by `hang_steps` (also in `deliveries`)."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _called_back: set[str] = field(default_factory=set)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def hold(self, kind: str, seconds: float, key_part: str = "") -> Hold:
        """Hold the next `kind` request (its key containing `key_part`) open for `seconds`.

        The request is acted on first: while it is held, it is in the provider's hands.
        """
        hold = Hold(kind, seconds, key_part)
        self.holds.append(hold)
        return hold

    async def close(self) -> None:
        """Let hung requests go, cancel call-backs still due (the scenario is over)."""
        self._released.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def counts(self) -> Counter[str]:
        """Deliveries per idempotency key."""
        return Counter(delivery.key for delivery in self.deliveries)

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, count, act, answer: a duplicate request is acted on again, on purpose."""
        body = await request.read()
        if not verify(self.secret, request.headers.get(TIMESTAMP_HEADER, ""), body,
                      request.headers.get(SIGNATURE_HEADER, ""), now=time.time()):
            self.refused += 1
            return web.json_response({"error": "bad_signature"}, status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": "unavailable"}, status=503)
        payload = json.loads(body)
        delivery = Delivery(str(payload["idempotency_key"]), str(payload["session_id"]),
                            str(payload["kind"]), str(payload["to"]), time.time())
        if delivery.key.endswith(self.refuse_steps):
            self.rejections.append(delivery)
            return web.json_response({"error": "refused"}, status=400)
        self.deliveries.append(delivery)
        answer: dict[str, str] = {}
        if delivery.kind == "call":
            answer = {"result": self.answers.get(delivery.to, "no_answer")}
        elif delivery.kind in {"voicemail", "message"}:
            # The practice's phone system played or recorded the message (the channel's
            # contract: a voicemail or message is delivered only on its "answered").
            answer = {"result": "answered"}
            if delivery.kind == "voicemail" and delivery.to in self.calls_back_after:
                self._call_back_later(delivery.session_id, self.calls_back_after[delivery.to])
        hold = next((h for h in self.holds if h.kind == delivery.kind
                     and h.key_part in delivery.key and not h.seen.is_set()), None)
        if hold is not None:
            hold.delivery = delivery
            hold.seen.set()
            await asyncio.sleep(hold.seconds)
        if delivery.key.endswith(self.hang_steps):
            self.hung.append(delivery)
            await self._released.wait()  # the connection stays open, no answer comes
        return web.json_response(answer, status=200)

    def _call_back_later(self, session_id: str, seconds: float) -> None:
        if session_id in self._called_back:  # one call-back per client, however many voicemails
            return
        self._called_back.add(session_id)

        async def later() -> None:
            await asyncio.sleep(seconds)
            await self.call_back(session_id)

        task = asyncio.create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def serve(receiver: PracticeReceiver) -> tuple[web.AppRunner, str]:
    """Serve the receiver on a free loopback port; returns the runner and the URL."""
    app = web.Application()
    app.router.add_post("/outreach", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # aiohttp exposes the bound port only here
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://127.0.0.1:{port}/outreach"
