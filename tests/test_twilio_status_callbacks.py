"""Twilio's status callbacks: the real HTTP API receives them, the step waiting on the call
reads them from the ledger, and polling stays the fallback.

Callbacks are signed here with Twilio's published algorithm (tests/support/twilio_wire.py), not
the SDK's validator that the route uses, so a route that verified them wrongly would fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import Application
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.twilio import TwilioProvider
from missed_session.config import Settings
from missed_session.domain.models import CallResult
from tests.support.servers import TEST_KEYS
from tests.support.twilio_wire import (
    CALLBACK,
    CLIENT_PHONE,
    FROM,
    TOKEN,
    FakeTwilio,
    post_status_callback,
    twilio_server,
    twilio_signature,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(BasicAuth|'auth' parameter).*:DeprecationWarning"
)

SID = "CA" + "0123456789abcdef" * 2


@pytest.fixture
async def route(pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The status callback route's URL on a real API (no Temporal needed for it)."""
    settings = Settings(encryption_keys=TEST_KEYS, twilio_auth_token=TOKEN)
    async with Application(settings, pool=pool) as application, ApiServer(
        create_app(application, ApiSettings())
    ) as server:
        yield f"{server.url}/inbound/twilio/calls"


def callback(sid: str = SID, status: str = "completed", answered_by: str | None = "human",
             ) -> dict[str, str]:
    """The fields Twilio posts for a call's final status (numbers included, as it does)."""
    params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "CallStatus": status,
              "From": FROM, "To": CLIENT_PHONE, "Direction": "outbound-api",
              "ApiVersion": "2010-04-01", "CallDuration": "12"}
    if answered_by is not None:
        params["AnsweredBy"] = answered_by
    return params


async def reports(pool: asyncpg.Pool) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch("SELECT provider_ref, status, answered_by FROM provider_reports"
                            " ORDER BY provider_ref")
    return [(row["provider_ref"], row["status"], row["answered_by"]) for row in rows]


async def test_a_signed_final_status_is_recorded_once(route: str, pool: asyncpg.Pool) -> None:
    status, _ = await post_status_callback(route, callback(answered_by="machine_end_beep"))
    assert status == 204
    assert await reports(pool) == [(SID, "completed", "machine_end_beep")]
    # Twilio may post it again; a call ends once, and the first report stands.
    again, _ = await post_status_callback(route, callback(status="busy", answered_by=None))
    assert again == 204
    assert await reports(pool) == [(SID, "completed", "machine_end_beep")]
    # Nothing else of the callback is kept: no numbers.
    row = await pool.fetchrow("SELECT * FROM provider_reports")
    assert row is not None
    assert CLIENT_PHONE not in str(dict(row))


@pytest.mark.parametrize("forgery", ["wrong signature", "another token", "another url",
                                     "changed field"])
async def test_a_callback_not_signed_by_twilio_is_refused(
    route: str, pool: asyncpg.Pool, forgery: str,
) -> None:
    params = callback()
    if forgery == "wrong signature":
        answer = await post_status_callback(route, params, signature="bm90IGEgc2lnbmF0dXJl")
    elif forgery == "another token":
        answer = await post_status_callback(route, params, auth_token="someone-elses-token")
    elif forgery == "another url":
        answer = await post_status_callback(route, params,
                                            signed_url="https://example.org/inbound/twilio/calls")
    else:  # signed for one status, posted with another
        signed = callback(status="busy", answered_by=None)
        answer = await post_status_callback(
            route, params, signature=twilio_signature(TOKEN, route, signed))
    assert answer[0] == 403
    assert "signature does not match" in answer[1]
    assert await reports(pool) == []


@pytest.mark.parametrize(("params", "field"), [
    (callback(sid="CA123"), "CallSid"),
    (callback(sid="SM" + "0" * 32), "CallSid"),
    (callback(status="exploded"), "CallStatus"),
    (callback(answered_by="Robert'); DROP TABLE"), "AnsweredBy"),
])
async def test_a_malformed_callback_is_refused_naming_the_field(
    route: str, pool: asyncpg.Pool, params: dict[str, str], field: str,
) -> None:
    status, body = await post_status_callback(route, params)
    assert status == 422
    assert f"{field}:" in body
    assert await reports(pool) == []


async def test_a_status_short_of_final_is_taken_and_not_recorded(
    route: str, pool: asyncpg.Pool,
) -> None:
    status, _ = await post_status_callback(route, callback(status="ringing", answered_by=None))
    assert status == 204
    assert await reports(pool) == []


@pytest.mark.parametrize(("step", "status", "answered_by", "expected"), [
    ("call", "completed", "human", CallResult.ANSWERED),
    ("call", "completed", "unknown", CallResult.ANSWERED_UNKNOWN),
    ("message", "completed", "machine_end_beep", CallResult.ANSWERED),
    ("message", "no-answer", None, CallResult.NO_ANSWER),
])
async def test_the_waiting_step_takes_the_outcome_from_the_callback(
    route: str, pool: asyncpg.Pool, step: str, status: str, answered_by: str | None,
    expected: CallResult,
) -> None:
    # Polling alone would never end: every poll says ringing. Twilio posts the callback
    # while the step waits; the step reads it from the ledger on its next turn.
    fake = FakeTwilio(call_statuses=[("ringing", None)])
    posted: list[int] = []

    async def the_call_ends() -> None:
        if not posted:
            answer, _ = await post_status_callback(
                route, callback(fake.created_sid(), status, answered_by))
            posted.append(answer)

    fake.on_fetch = the_call_ends
    ledger = DeliveryLedger(pool)
    async with twilio_server(fake) as (client, _):
        channel = AtMostOnce(TwilioProvider(
            client, from_number=FROM, callback_number=CALLBACK, receipts=ledger,
            status_callback_url=route, poll_seconds=0.01, max_polls=50, fetch_every=1000,
        ), ledger)
        if step == "call":
            result = await channel.call("k", "s1", CLIENT_PHONE)
        else:
            result = await channel.deliver_message("k", "s1", CLIENT_PHONE, "Hi Sam")

    assert result is expected
    assert posted == [204]
    assert fake.fetches == 1  # the first poll only; the rest read the callback's report
    ((_, form, _),) = fake.created
    assert (form["StatusCallback"], form["StatusCallbackMethod"]) == (route, "POST")


async def test_without_a_callback_the_step_still_polls_twilio(
    route: str, pool: asyncpg.Pool,
) -> None:
    fake = FakeTwilio(call_statuses=[("ringing", None), ("ringing", None),
                                     ("completed", "human")])
    ledger = DeliveryLedger(pool)
    async with twilio_server(fake) as (client, _):
        channel = TwilioProvider(client, from_number=FROM, callback_number=CALLBACK,
                                receipts=ledger, status_callback_url=route,
                                poll_seconds=0.01, max_polls=50, fetch_every=4)
        assert await channel.call("k", "s1", CLIENT_PHONE) is CallResult.ANSWERED
    assert fake.fetches == 3  # polls 0, 4 and 8 asked Twilio; the others read the ledger
    assert await reports(pool) == []


def test_fetch_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fetch_every must be at least 1, not 0"):
        TwilioProvider(object(), from_number=FROM, callback_number=CALLBACK,
                      fetch_every=0)
