"""The Twilio channel: the official SDK, sending to a local server that answers like Twilio
(tests/support/twilio_wire.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from xml.etree import ElementTree

import asyncpg
import pytest
from twilio.rest import Client as TwilioClient

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    InvalidContactError,
)
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.twilio import TwilioProvider
from missed_session.domain.models import CallResult
from tests.support.twilio_wire import (
    ACCOUNT,
    CALLBACK,
    CLIENT_PHONE,
    FROM,
    TOKEN,
    FakeTwilio,
    LocalTwilioHttpClient,
    twilio_server,
)

# The SDK still hands aiohttp a BasicAuth object, which aiohttp 3.14 deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(BasicAuth|'auth' parameter).*:DeprecationWarning"
)


@pytest.fixture
async def twilio() -> AsyncIterator[tuple[FakeTwilio, TwilioProvider]]:
    fake = FakeTwilio()
    async with twilio_server(fake) as (client, _):
        yield fake, TwilioProvider(client, from_number=FROM, callback_number=CALLBACK,
                                  poll_seconds=0.01, max_polls=20,
                                  request_timeout_seconds=0.5)


@pytest.fixture
async def wired(pool: asyncpg.Pool) -> AsyncIterator[tuple[FakeTwilio, AtMostOnce]]:
    """The channel as the worker wires it: through the ledger, which also keeps each SID."""
    fake = FakeTwilio()
    ledger = DeliveryLedger(pool)
    async with twilio_server(fake) as (client, _):
        channel = TwilioProvider(client, from_number=FROM, callback_number=CALLBACK,
                                receipts=ledger, poll_seconds=0.01, max_polls=20,
                                request_timeout_seconds=0.5)
        yield fake, AtMostOnce(channel, ledger)


def said(twiml: str) -> list[str]:
    return [element.text or "" for element in ElementTree.fromstring(twiml).iter("Say")]


async def test_a_call_connects_the_answering_person_to_the_practice(
    twilio: tuple[FakeTwilio, TwilioProvider],
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
    wired: tuple[FakeTwilio, AtMostOnce],
) -> None:
    fake, channel = wired
    first = await channel.call("k", "s1", CLIENT_PHONE)
    assert await channel.call("k", "s1", CLIENT_PHONE) is first
    assert len(fake.created) == 1


@pytest.mark.parametrize(("status", "answered_by"), [
    ("no-answer", None), ("busy", None), ("completed", "machine_start"),
])
async def test_no_person_is_no_answer(twilio: tuple[FakeTwilio, TwilioProvider], status: str,
                                      answered_by: str | None) -> None:
    fake, channel = twilio
    fake.call_statuses = [(status, answered_by)]
    assert await channel.call("k", "s1", CLIENT_PHONE) is CallResult.NO_ANSWER


async def test_a_failed_call_is_an_invalid_contact(
    twilio: tuple[FakeTwilio, TwilioProvider],
) -> None:
    fake, channel = twilio
    fake.call_statuses = [("failed", None)]
    with pytest.raises(InvalidContactError):
        await channel.call("k", "s1", CLIENT_PHONE)


async def test_a_voicemail_is_said_after_the_beep(
    wired: tuple[FakeTwilio, AtMostOnce],
) -> None:
    fake, channel = wired
    fake.call_statuses = [("queued", None), ("in-progress", "machine_end_beep"),
                          ("completed", "machine_end_beep")]
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
    twilio: tuple[FakeTwilio, TwilioProvider], status: str,
) -> None:
    fake, channel = twilio
    fake.call_statuses = [("ringing", None), (status, None)]
    assert await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam") is (
        CallResult.NO_ANSWER
    )


async def test_polls_that_fail_are_tried_again(
    twilio: tuple[FakeTwilio, TwilioProvider],
) -> None:
    fake, channel = twilio
    fake.failing_fetches = 2
    fake.call_statuses = [("completed", "human")]
    assert await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam") is (
        CallResult.ANSWERED
    )
    assert len(fake.created) == 1


async def test_a_placed_call_whose_outcome_stays_unknown_is_uncertain(
    wired: tuple[FakeTwilio, AtMostOnce],
) -> None:
    fake, channel = wired
    fake.failing_fetches = 1_000  # Twilio's API keeps failing once the call is placed
    with pytest.raises(DeliveryUncertainError, match="outcome is unknown"):
        await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam")
    with pytest.raises(DeliveryUncertainError):  # a retry does not call again
        await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam")
    assert len(fake.created) == 1


async def test_a_create_that_times_out_is_uncertain_and_not_sent_again(
    wired: tuple[FakeTwilio, AtMostOnce],
) -> None:
    fake, channel = wired
    fake.hang_on_create = True
    with pytest.raises(DeliveryUncertainError):
        await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    fake.hang_on_create = False
    with pytest.raises(DeliveryUncertainError):
        await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    assert len(fake.created) == 1


async def test_a_5xx_releases_the_step_for_a_retry(
    wired: tuple[FakeTwilio, AtMostOnce],
) -> None:
    fake, channel = wired
    fake.error = (503, 20500)
    with pytest.raises(ChannelUnavailableError):
        await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    fake.error = None
    await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")
    assert len(fake.created) == 2  # the first was refused: the retry sent it


async def test_twilio_not_listening_is_a_provider_failure() -> None:
    http_client = LocalTwilioHttpClient("http://127.0.0.1:9")
    channel = TwilioProvider(TwilioClient(ACCOUNT, TOKEN, http_client=http_client),
                            from_number=FROM, callback_number=CALLBACK)
    try:
        with pytest.raises(ChannelUnavailableError):
            await channel.send_text("k", "s1", CLIENT_PHONE, "Hi")
    finally:
        await http_client.close()


async def test_a_text_is_one_sms(twilio: tuple[FakeTwilio, TwilioProvider]) -> None:
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
    twilio: tuple[FakeTwilio, TwilioProvider], status: int, code: int, error: type[Exception],
) -> None:
    fake, channel = twilio
    fake.error = (status, code)
    with pytest.raises(error):
        await channel.send_text("k", "s1", CLIENT_PHONE, "Hi")


async def test_email_is_not_twilios(twilio: tuple[FakeTwilio, TwilioProvider]) -> None:
    _, channel = twilio
    with pytest.raises(ChannelRejectedError):
        await channel.send_email("k", "s1", "robin@example.org", "s", "b")


# -- who answered ----------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "expected"), [
    ([("in-progress", "human")], CallResult.ANSWERED),
    ([("completed", "unknown")], CallResult.ANSWERED_UNKNOWN),
    ([("in-progress", "unknown")], CallResult.ANSWERED_UNKNOWN),
    ([("completed", None)], CallResult.ANSWERED_UNKNOWN),  # picked up, no verdict
    ([("completed", "something-new")], CallResult.ANSWERED_UNKNOWN),
    ([("in-progress", "machine")], CallResult.NO_ANSWER),  # the Call resource's "machine"
    ([("in-progress", "fax")], CallResult.NO_ANSWER),
    # In progress without a verdict: the detector is still listening; wait for it.
    ([("in-progress", None), ("in-progress", None), ("in-progress", "human")],
     CallResult.ANSWERED),
    ([("in-progress", None), ("completed", "unknown")], CallResult.ANSWERED_UNKNOWN),
])
async def test_only_a_human_verdict_is_the_clients_answer(
    twilio: tuple[FakeTwilio, TwilioProvider], statuses: list[tuple[str, str | None]],
    expected: CallResult,
) -> None:
    fake, channel = twilio
    fake.call_statuses = statuses
    assert await channel.call("k", "s1", CLIENT_PHONE) is expected
    assert fake.fetches == len(statuses)


@pytest.mark.parametrize(("answered_by", "expected"), [
    ("human", CallResult.ANSWERED),
    ("machine", CallResult.ANSWERED),  # DetectMessageEnd: said after the greeting ended
    ("machine_end_beep", CallResult.ANSWERED),
    ("machine_end_silence", CallResult.ANSWERED),
    ("fax", CallResult.NO_ANSWER),
    ("unknown", CallResult.ANSWERED_UNKNOWN),  # played, to whom or over what unknown
    ("machine_start", CallResult.ANSWERED_UNKNOWN),
    (None, CallResult.ANSWERED_UNKNOWN),
])
async def test_a_message_call_counts_as_delivered_only_to_a_person_or_after_a_greeting(
    twilio: tuple[FakeTwilio, TwilioProvider], answered_by: str | None, expected: CallResult,
) -> None:
    fake, channel = twilio
    fake.call_statuses = [("in-progress", answered_by), ("completed", answered_by)]
    assert await channel.deliver_message("k-esc", "s1", CLIENT_PHONE, "Hi Sam") is expected
    assert fake.fetches == 2  # in progress is not yet delivered, whoever answered


# -- a dead worker's call, resumed by its SID -----------------------------------------------


async def claim_row(pool: asyncpg.Pool, key: str) -> tuple[str, str | None, str | None] | None:
    row = await pool.fetchrow(
        "SELECT state, result, provider_ref FROM channel_deliveries WHERE idempotency_key = $1",
        key,
    )
    return None if row is None else (row["state"], row["result"], row["provider_ref"])


async def test_the_call_sid_is_kept_as_soon_as_twilio_answers_the_create(
    wired: tuple[FakeTwilio, AtMostOnce], pool: asyncpg.Pool,
) -> None:
    fake, channel = wired
    while_ringing: list[tuple[str, str | None, str | None] | None] = []

    async def look() -> None:
        while_ringing.append(await claim_row(pool, "k-call"))

    fake.on_fetch = look
    assert await channel.call("k-call", "s1", CLIENT_PHONE) is CallResult.ANSWERED
    sid = fake.created_sid()
    # Already on the claim while the call rang, before its outcome was known.
    assert while_ringing[0] == ("pending", None, sid)
    assert await claim_row(pool, "k-call") == ("done", "answered", sid)


@pytest.mark.parametrize(("step", "statuses", "expected"), [
    ("call", [("ringing", None), ("in-progress", "human")], CallResult.ANSWERED),
    ("call", [("ringing", None), ("completed", "unknown")], CallResult.ANSWERED_UNKNOWN),
    ("voicemail", [("in-progress", "machine"), ("completed", "machine_end_beep")],
     CallResult.ANSWERED),
    ("message", [("ringing", None), ("busy", None)], CallResult.NO_ANSWER),
])
async def test_a_dead_workers_call_is_resumed_by_its_sid_and_never_placed_again(
    wired: tuple[FakeTwilio, AtMostOnce], pool: asyncpg.Pool, step: str,
    statuses: list[tuple[str, str | None]], expected: CallResult,
) -> None:
    # The worker that placed this call died while it rang: the claim is pending, with the
    # SID Twilio answered the create with.
    fake, channel = wired
    sid = "CA" + "7" * 32
    await pool.execute(
        "INSERT INTO channel_deliveries (idempotency_key, state, provider_ref)"
        " VALUES ($1, 'pending', $2)", "k", sid,
    )
    fake.call_statuses = statuses
    if step == "call":
        result = await channel.call("k", "s1", CLIENT_PHONE)
    elif step == "voicemail":
        result = await channel.leave_voicemail("k", "s1", CLIENT_PHONE, "Hi Robin")
    else:
        result = await channel.deliver_message("k", "s1", CLIENT_PHONE, "Hi Sam")

    assert result is expected  # the provider's outcome, not "uncertain"
    assert fake.created == []  # never placed twice
    assert fake.fetched == [sid] * len(statuses)
    assert await claim_row(pool, "k") == ("done", expected.value, sid)
    # And settled: a later retry returns the outcome without asking Twilio.
    assert await channel.deliver_message("k", "s1", CLIENT_PHONE, "Hi Sam") is expected
    assert fake.fetched == [sid] * len(statuses)


async def test_a_dead_workers_text_with_a_sid_is_sent_and_not_sent_again(
    wired: tuple[FakeTwilio, AtMostOnce], pool: asyncpg.Pool,
) -> None:
    fake, channel = wired
    sid = "SM" + "7" * 32
    await pool.execute(
        "INSERT INTO channel_deliveries (idempotency_key, state, provider_ref)"
        " VALUES ($1, 'pending', $2)", "k-text", sid,
    )
    await channel.send_text("k-text", "s1", CLIENT_PHONE, "Hi Robin")  # Twilio accepted it
    assert fake.created == []
    assert await claim_row(pool, "k-text") == ("done", "sent", sid)


async def test_a_dead_workers_claim_without_a_sid_stays_uncertain(
    wired: tuple[FakeTwilio, AtMostOnce], pool: asyncpg.Pool,
) -> None:
    # The create may or may not have reached Twilio: nothing to resume, nothing re-sent.
    fake, channel = wired
    await pool.execute(
        "INSERT INTO channel_deliveries (idempotency_key, state) VALUES ('k', 'pending')"
    )
    with pytest.raises(DeliveryUncertainError, match="not sent again"):
        await channel.deliver_message("k", "s1", CLIENT_PHONE, "Hi Sam")
    assert (fake.created, fake.fetched) == ([], [])


async def test_a_twilio_that_hangs_on_polls_leaves_a_call_a_retry_resumes(
    pool: asyncpg.Pool,
) -> None:
    # Twilio takes the call, then stops answering its polls: each poll is bounded, the
    # deadline makes the step uncertain, the SID stays on the claim, and no second call is
    # placed; once Twilio answers again, taking the step up from its SID reads the outcome.
    fake = FakeTwilio(call_statuses=[("completed", "human")], hang_on_fetch=True)
    ledger = DeliveryLedger(pool)
    async with twilio_server(fake) as (client, _):
        phone = TwilioProvider(client, from_number=FROM, callback_number=CALLBACK,
                              receipts=ledger, poll_seconds=0.01, max_polls=2,
                              request_timeout_seconds=0.2)
        channel = AtMostOnce(phone, ledger)
        with pytest.raises(DeliveryUncertainError, match="outcome is unknown"):
            await channel.deliver_message("k", "s1", CLIENT_PHONE, "Hi Sam")
        sid = fake.created_sid()
        assert await claim_row(pool, "k") == ("pending", "uncertain", sid)

        fake.hang_on_fetch = False
        assert await channel.deliver_message("k", "s1", CLIENT_PHONE, "Hi Sam") is (
            CallResult.ANSWERED
        )
    assert len(fake.created) == 1
