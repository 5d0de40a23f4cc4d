"""At most once across worker crashes, for channels without idempotency of their own."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    InvalidContactError,
)
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger, DeliveryUncertainError
from missed_session.domain.models import CallResult


class CountingProvider:
    """A provider that counts what it was asked to deliver, like a real one would bill."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail_next = False

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        self.calls[key] += 1
        if self.fail_next:
            self.fail_next = False
            raise ChannelUnavailableError("provider answered 503")
        return CallResult.ANSWERED

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        self.calls[key] += 1
        return CallResult.ANSWERED

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        self.calls[key] += 1
        return CallResult.ANSWERED

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        self.calls[key] += 1

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        self.calls[key] += 1


async def test_a_retry_of_a_delivered_step_returns_its_result_without_calling(
    pool: asyncpg.Pool,
) -> None:
    provider = CountingProvider()
    channel = AtMostOnce(provider, DeliveryLedger(pool))
    assert await channel.call("s/attempt-1/call", "s", "+14155550123") is CallResult.ANSWERED
    assert await channel.call("s/attempt-1/call", "s", "+14155550123") is CallResult.ANSWERED
    await channel.send_text("s/attempt-1/text", "s", "+14155550123", "hi")
    await channel.send_text("s/attempt-1/text", "s", "+14155550123", "hi")
    assert provider.calls == {"s/attempt-1/call": 1, "s/attempt-1/text": 1}


async def test_a_provider_error_releases_the_step_for_an_ordinary_retry(
    pool: asyncpg.Pool,
) -> None:
    provider = CountingProvider()
    provider.fail_next = True
    channel = AtMostOnce(provider, DeliveryLedger(pool))
    with pytest.raises(ChannelUnavailableError):
        await channel.call("s/attempt-1/call", "s", "+14155550123")
    assert await channel.call("s/attempt-1/call", "s", "+14155550123") is CallResult.ANSWERED
    assert provider.calls["s/attempt-1/call"] == 2


async def test_a_step_left_pending_by_a_crashed_worker_is_not_repeated(
    pool: asyncpg.Pool,
) -> None:
    # The worker that claimed this step died after the provider call, before settling it.
    await pool.execute(
        "INSERT INTO channel_deliveries (idempotency_key, state) VALUES ($1, 'pending')",
        "s/attempt-1/voicemail",
    )
    provider = CountingProvider()
    channel = AtMostOnce(provider, DeliveryLedger(pool))
    with pytest.raises(DeliveryUncertainError, match="not sent again"):
        await channel.leave_voicemail("s/attempt-1/voicemail", "s", "+14155550123", "hi")
    assert provider.calls == {}


class AnsweringProvider(CountingProvider):
    """Counts, then answers each text with the next scripted error (None: delivered)."""

    def __init__(self, *answers: Exception | None) -> None:
        super().__init__()
        self._answers = list(answers)

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        self.calls[key] += 1
        answer = self._answers.pop(0) if self._answers else None
        if answer is not None:
            raise answer


async def test_an_ambiguous_answer_keeps_the_claim_and_is_never_resent(
    pool: asyncpg.Pool,
) -> None:
    provider = AnsweringProvider(DeliveryUncertainError("timed out after sending"))
    channel = AtMostOnce(provider, DeliveryLedger(pool))
    for _ in range(2):
        with pytest.raises(DeliveryUncertainError):
            await channel.send_text("s/attempt-1/text", "s", "+14155550123", "hi")
    assert provider.calls["s/attempt-1/text"] == 1
    row = await pool.fetchrow("SELECT state, result FROM channel_deliveries")
    assert row is not None
    assert (row["state"], row["result"]) == ("pending", "uncertain")


@pytest.mark.parametrize("refusal", [
    ChannelRejectedError("HTTP 400"), InvalidContactError("no such number"),
    ChannelUnavailableError("HTTP 503"),
])
async def test_a_refusal_before_acceptance_releases_the_claim(
    pool: asyncpg.Pool, refusal: Exception,
) -> None:
    provider = AnsweringProvider(refusal)
    channel = AtMostOnce(provider, DeliveryLedger(pool))
    with pytest.raises(type(refusal)):
        await channel.send_text("s/attempt-1/text", "s", "+14155550123", "hi")
    assert await pool.fetchval("SELECT count(*) FROM channel_deliveries") == 0
    await channel.send_text("s/attempt-1/text", "s", "+14155550123", "hi")
    assert provider.calls["s/attempt-1/text"] == 2


async def test_a_step_cancelled_mid_delivery_stays_uncertain(pool: asyncpg.Pool) -> None:
    started = asyncio.Event()

    class Slow(CountingProvider):
        async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
            self.calls[key] += 1
            started.set()
            await asyncio.sleep(30)

    provider = Slow()
    channel = AtMostOnce(provider, DeliveryLedger(pool))
    sending = asyncio.create_task(
        channel.send_text("s/attempt-1/text", "s", "+14155550123", "hi")
    )
    await started.wait()
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    with pytest.raises(DeliveryUncertainError):  # the request was out: not sent again
        await channel.send_text("s/attempt-1/text", "s", "+14155550123", "hi")
    assert provider.calls["s/attempt-1/text"] == 1


class ResumableProvider(CountingProvider):
    """A provider that names its calls, and answers a resumed one as scripted."""

    def __init__(self, resumed: Exception | CallResult) -> None:
        super().__init__()
        self.resumed: list[str] = []
        self._answer = resumed

    async def resume_call(self, provider_ref: str) -> CallResult:
        self.resumed.append(provider_ref)
        if isinstance(self._answer, Exception):
            raise self._answer
        return self._answer

    async def resume_message(self, provider_ref: str) -> CallResult:
        return await self.resume_call(provider_ref)

    async def resume_text(self, provider_ref: str) -> None:
        self.resumed.append(provider_ref)


async def claim_of(pool: asyncpg.Pool, key: str) -> tuple[str, str | None] | None:
    row = await pool.fetchrow(
        "SELECT state, result FROM channel_deliveries WHERE idempotency_key = $1", key)
    return None if row is None else (row["state"], row["result"])


@pytest.mark.parametrize(("answer", "claim_after"), [
    (CallResult.NO_ANSWER, ("done", "no_answer")),
    (DeliveryUncertainError("outcome unknown"), ("pending", "uncertain")),  # still kept
    (InvalidContactError("the call failed"), None),  # nothing delivered: released
])
async def test_a_pending_step_with_the_providers_id_is_resumed_and_settled_on_its_outcome(
    pool: asyncpg.Pool, answer: Exception | CallResult, claim_after: tuple[str, str] | None,
) -> None:
    ledger = DeliveryLedger(pool)
    await pool.execute("INSERT INTO channel_deliveries (idempotency_key, state)"
                       " VALUES ('s/attempt-1/call', 'pending')")
    await ledger.accepted("s/attempt-1/call", "CALL-1")  # as the dead worker's try did
    provider = ResumableProvider(answer)
    channel = AtMostOnce(provider, ledger)
    if isinstance(answer, Exception):
        with pytest.raises(type(answer)):
            await channel.call("s/attempt-1/call", "s", "+14155550123")
    else:
        assert await channel.call("s/attempt-1/call", "s", "+14155550123") is answer
    assert provider.resumed == ["CALL-1"]
    assert provider.calls == {}  # never placed again
    assert await claim_of(pool, "s/attempt-1/call") == claim_after


async def test_an_id_is_kept_only_on_a_pending_claim(pool: asyncpg.Pool) -> None:
    ledger = DeliveryLedger(pool)
    channel = AtMostOnce(CountingProvider(), ledger)
    await channel.call("s/attempt-1/call", "s", "+14155550123")  # settled: done
    await ledger.accepted("s/attempt-1/call", "CALL-LATE")
    assert await pool.fetchval("SELECT provider_ref FROM channel_deliveries") is None


async def test_a_channel_that_cannot_resume_leaves_a_pending_step_uncertain(
    pool: asyncpg.Pool,
) -> None:
    ledger = DeliveryLedger(pool)
    await pool.execute("INSERT INTO channel_deliveries (idempotency_key, state, provider_ref)"
                       " VALUES ('s/attempt-1/call', 'pending', 'CALL-1')")
    provider = CountingProvider()  # no resume_*: it cannot look a call up
    with pytest.raises(DeliveryUncertainError):
        await AtMostOnce(provider, ledger).call("s/attempt-1/call", "s", "+14155550123")
    assert provider.calls == {}
