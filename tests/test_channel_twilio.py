"""The Twilio channel: the official SDK, sending to a local server that answers like Twilio.

The SDK's own async HTTP client is subclassed only to send its requests to 127.0.0.1
instead of api.twilio.com; everything else (form encoding, auth, JSON parsing, error
handling) is the SDK's. The server checks what Twilio would see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

import asyncpg
import pytest
from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client as TwilioClient

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
)
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.twilio import TwilioChannel
from missed_session.domain.models import CallResult

ACCOUNT = "AC" + "0" * 32
TOKEN = "test-only-auth-token"
FROM = "+15555550100"
CALLBACK = "+15555550111"
CLIENT_PHONE = "+14155550123"

# The SDK still hands aiohttp a BasicAuth object, which aiohttp 3.14 deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(BasicAuth|'auth' parameter).*:DeprecationWarning"
)


class LocalTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's async client, pointed at a local server."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base = urlsplit(base_url)

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        local = urlunsplit((self._base.scheme, self._base.netloc, parts.path, parts.query, ""))
        return await super().request(method, local, *args, **kwargs)


@dataclass
class FakeTwilio:
    """Answers `Calls.json`, `Calls/<sid>.json` and `Messages.json` in Twilio's REST shape."""

    call_statuses: list[tuple[str, str | None]] = field(
        default_factory=lambda: [("ringing", None), ("completed", "human")]
    )
    """(status, answered_by) returned by successive fetches of a call."""
    error: tuple[int, int] | None = None
    """(HTTP status, Twilio code) to answer every create with."""
    hang_on_create: bool = False
    """Take the create request, then never answer (as if the answer were lost)."""
    failing_fetches: int = 0
    """How many fetches of a call answer 503 before the statuses are served."""
    created: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    """(resource, form fields, Authorization header) of each create."""
    fetches: int = 0

    async def create(self, request: web.Request) -> web.Response:
        resource = request.match_info["resource"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.created.append((resource, form, request.headers.get("Authorization", "")))
        if self.hang_on_create:
            await asyncio.sleep(30)
        if self.error is not None:
            status, code = self.error
            return web.json_response(
                {"code": code, "message": "refused", "more_info": f"https://www.twilio.com/docs/errors/{code}",
                 "status": status}, status=status)
        prefix = "CA" if resource == "Calls" else "SM"
        sid = f"{prefix}{len(self.created):032d}"
        return web.json_response({
            "sid": sid, "account_sid": ACCOUNT, "to": form["To"], "from": form["From"],
            "status": "queued", "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT}/{resource}/{sid}.json",
            **({"body": form["Body"]} if resource == "Messages" else {}),
        }, status=201)

    async def fetch(self, request: web.Request) -> web.Response:
        if self.failing_fetches:
            self.failing_fetches -= 1
            return web.json_response(
                {"code": 20500, "message": "Internal Server Error", "status": 500}, status=500)
        status, answered_by = self.call_statuses[min(self.fetches, len(self.call_statuses) - 1)]
        self.fetches += 1
        sid = request.match_info["sid"]
        return web.json_response({
            "sid": sid, "account_sid": ACCOUNT, "status": status, "answered_by": answered_by,
            "to": CLIENT_PHONE, "from": FROM, "api_version": "2010-04-01",
        })


@pytest.fixture
async def twilio() -> AsyncIterator[tuple[FakeTwilio, TwilioChannel]]:
    fake = FakeTwilio()
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
    client = TwilioClient(ACCOUNT, TOKEN, http_client=http_client)
    yield fake, TwilioChannel(client, from_number=FROM, callback_number=CALLBACK,
                              poll_seconds=0.01, max_polls=20, request_timeout_seconds=0.5)
    await http_client.close()
    await runner.cleanup()


def said(twiml: str) -> list[str]:
    return [element.text or "" for element in ElementTree.fromstring(twiml).iter("Say")]


async def test_a_call_connects_the_answering_person_to_the_practice(
    twilio: tuple[FakeTwilio, TwilioChannel],
) -> None:
    fake, channel = twilio

    assert await channel.call("session-s1/attempt-1/call", "s1", CLIENT_PHONE) is (
        CallResult.ANSWERED
    )

    ((resource, form, auth),) = fake.created
    assert resource == "Calls"
    assert auth.startswith("Basic ")
    assert (form["To"], form["From"], form["MachineDetection"], form["Timeout"]) == (
        CLIENT_PHONE, FROM, "Enable", "30"
    )
    dial = ElementTree.fromstring(form["Twiml"]).find("Dial")
    assert dial is not None
    assert dial.text == CALLBACK
    assert fake.fetches == 2  # ringing, then completed


async def test_a_retry_with_the_same_key_rings_once(
    twilio: tuple[FakeTwilio, TwilioChannel], pool: asyncpg.Pool,
) -> None:
    fake, twilio_channel = twilio
    channel = AtMostOnce(twilio_channel, DeliveryLedger(pool))  # as the worker wires it
    first = await channel.call("k", "s1", CLIENT_PHONE)
    assert await channel.call("k", "s1", CLIENT_PHONE) is first
    assert len(fake.created) == 1


@pytest.mark.parametrize(("status", "answered_by"), [
    ("no-answer", None), ("busy", None), ("completed", "machine_start"),
])
async def test_no_person_is_no_answer(twilio: tuple[FakeTwilio, TwilioChannel], status: str,
                                      answered_by: str | None) -> None:
    fake, channel = twilio
    fake.call_statuses = [(status, answered_by)]
    assert await channel.call("k", "s1", CLIENT_PHONE) is CallResult.NO_ANSWER


async def test_a_failed_call_is_an_invalid_contact(
    twilio: tuple[FakeTwilio, TwilioChannel],
) -> None:
    fake, channel = twilio
    fake.call_statuses = [("failed", None)]
    with pytest.raises(InvalidContactError):
        await channel.call("k", "s1", CLIENT_PHONE)


async def test_a_voicemail_is_said_after_the_beep(
    twilio: tuple[FakeTwilio, TwilioChannel], pool: asyncpg.Pool
) -> None:
    fake, twilio_channel = twilio
    fake.call_statuses = [("queued", None), ("in-progress", "machine_end_beep"),
                          ("completed", "machine_end_beep")]
    channel = AtMostOnce(twilio_channel, DeliveryLedger(pool))  # as the worker wires it
    text = "Hi Robin, this is Alex. Please call us back at +15555550111. Thank you."

    assert await channel.leave_voicemail("k-vm", "s1", CLIENT_PHONE, text) is (
        CallResult.ANSWERED
    )
    # A retry: once only, and the recorded outcome.
    assert await channel.leave_voicemail("k-vm", "s1", CLIENT_PHONE, text) is (
        CallResult.ANSWERED
    )

    ((resource, form, _),) = fake.created
    assert resource == "Calls"
    assert form["MachineDetection"] == "DetectMessageEnd"
    assert said(form["Twiml"]) == [text]
    assert fake.fetches == 3  # queued is not delivered; in progress is not yet


@pytest.mark.parametrize("status", ["busy", "no-answer", "canceled"])
async def test_a_message_call_that_ends_unanswered_is_not_delivered(
    twilio: tuple[FakeTwilio, TwilioChannel], status: str,
) -> None:
    fake, channel = twilio
    fake.call_statuses = [("ringing", None), (status, None)]
    assert await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam") is (
        CallResult.NO_ANSWER
    )


async def test_polls_that_fail_are_tried_again(
    twilio: tuple[FakeTwilio, TwilioChannel],
) -> None:
    fake, channel = twilio
    fake.failing_fetches = 2
    fake.call_statuses = [("completed", "human")]
    assert await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam") is (
        CallResult.ANSWERED
    )
    assert len(fake.created) == 1


async def test_a_placed_call_whose_outcome_stays_unknown_is_uncertain(
    twilio: tuple[FakeTwilio, TwilioChannel], pool: asyncpg.Pool,
) -> None:
    fake, twilio_channel = twilio
    fake.failing_fetches = 1_000  # Twilio's API keeps failing once the call is placed
    channel = AtMostOnce(twilio_channel, DeliveryLedger(pool))
    with pytest.raises(DeliveryUncertainError, match="outcome is unknown"):
        await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam")
    with pytest.raises(DeliveryUncertainError):  # a retry does not call again
        await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam")
    assert len(fake.created) == 1


async def test_a_create_that_times_out_is_uncertain_and_not_sent_again(
    twilio: tuple[FakeTwilio, TwilioChannel], pool: asyncpg.Pool,
) -> None:
    fake, twilio_channel = twilio
    fake.hang_on_create = True
    channel = AtMostOnce(twilio_channel, DeliveryLedger(pool))
    with pytest.raises(DeliveryUncertainError):
        await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    fake.hang_on_create = False
    with pytest.raises(DeliveryUncertainError):
        await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    assert len(fake.created) == 1


async def test_a_5xx_releases_the_step_for_a_retry(
    twilio: tuple[FakeTwilio, TwilioChannel], pool: asyncpg.Pool,
) -> None:
    fake, twilio_channel = twilio
    fake.error = (503, 20500)
    channel = AtMostOnce(twilio_channel, DeliveryLedger(pool))
    with pytest.raises(ChannelUnavailableError):
        await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    fake.error = None
    await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    assert len(fake.created) == 2  # the first was refused: the retry sent it


async def test_twilio_not_listening_is_a_provider_failure() -> None:
    http_client = LocalTwilioHttpClient("http://127.0.0.1:9")
    channel = TwilioChannel(TwilioClient(ACCOUNT, TOKEN, http_client=http_client),
                            from_number=FROM, callback_number=CALLBACK)
    try:
        with pytest.raises(ChannelUnavailableError):
            await channel.send_text("k", "s1", CLIENT_PHONE, "Hi")
    finally:
        await http_client.close()


async def test_a_text_is_one_sms(twilio: tuple[FakeTwilio, TwilioChannel]) -> None:
    fake, channel = twilio
    await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    ((resource, form, _),) = fake.created
    assert resource == "Messages"
    assert (form["To"], form["From"], form["Body"]) == (CLIENT_PHONE, FROM, "Hi Robin")


@pytest.mark.parametrize(("status", "code", "error"), [
    (400, 21211, InvalidContactError),
    (400, 21614, InvalidContactError),
    (400, 21610, ChannelRejectedError),
    (401, 20003, ChannelRejectedError),
    (503, 20500, ChannelUnavailableError),
    (429, 20429, ChannelUnavailableError),
])
async def test_twilio_errors_say_whether_to_retry(
    twilio: tuple[FakeTwilio, TwilioChannel], status: int, code: int, error: type[Exception],
) -> None:
    fake, channel = twilio
    fake.error = (status, code)
    with pytest.raises(error):
        await channel.send_text("k", "s1", CLIENT_PHONE, "Hi")


async def test_email_is_not_twilios(twilio: tuple[FakeTwilio, TwilioChannel]) -> None:
    _, channel = twilio
    with pytest.raises(ChannelRejectedError):
        await channel.send_email("k", "s1", "robin@example.org", "s", "b")
