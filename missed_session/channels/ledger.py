"""At most once, across worker crashes, for channels that have no idempotency of their own.

Twilio and SMTP accept the same request twice and deliver it twice. The outreach activities
are retried by Temporal, so each step's idempotency key is claimed in PostgreSQL before the
provider is called and settled after:

- delivered: the claim is settled (`done`, with the result); a retry returns that result
  without calling the provider again;
- refused before acceptance (refused connection, 4xx, 5xx, an invalid contact): nothing
  was delivered, so the claim is released and a retry may send;
- uncertain (a timeout or lost connection after the request was sent, a call placed whose
  outcome is unknown, a step cancelled mid-request): the claim stays `pending`, with the
  reason in `result`, and is never released: the person may have been reached, so no retry
  sends it again;
- a claim a retry finds `pending` (a dead worker's step, or an uncertain one): uncertain
  too, never a refusal; unless the provider's id for it was kept (below).

A provider that names what it created (Twilio's Call and Message SIDs) has that id kept on
the claim (`provider_ref`) as soon as it answers the create request. A retry that finds the
claim pending *with* an id knows the request was accepted and which call it made: it
resumes watching that call (the channel's `resume_*`) and settles the claim on the
provider's outcome, never placing the call again. Only a claim without an id (the request
may or may not have reached the provider) is uncertain.

Settling and releasing outlast a PostgreSQL outage: they are retried with backoff until
the database answers (the activity heartbeats meanwhile), because a provider's answer we
failed to record would otherwise read as "uncertain" on the retry.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import asyncpg
import structlog

from missed_session.channels.base import (
    ChannelRejectedError,
    ChannelUnavailableError,
    DeliveryUncertainError,
    EmailProvider,
    InvalidContactError,
    Provider,
)
from missed_session.domain.models import CallResult
from missed_session.store.deliveries import DeliveryStore, ProviderReport

log = structlog.get_logger(__name__)

__all__ = ["STORE_UNREACHABLE", "AtMostOnce", "DeliveryLedger", "DeliveryUncertainError",
           "EmailOnce", "ProviderReceipts", "ProviderReport", "ResumableProvider"]

STORE_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.InterfaceError,  # the connection was closed under us
)
"""What PostgreSQL being unreachable looks like to asyncpg: our outage, not the provider's."""

PENDING_FOUND = (
    "a previous try of this step may have reached the person (it was left pending: the "
    "worker stopped mid-delivery, or the provider's answer was ambiguous); not sent again"
)
UNCERTAIN_NOTE = "uncertain"
"""`result` of a claim kept pending because the provider's answer was ambiguous."""
DEFINITE_REFUSALS = (ChannelUnavailableError, ChannelRejectedError, InvalidContactError)
"""The provider answered before accepting the request: nothing was delivered."""


class ProviderReceipts(Protocol):
    """Where a channel keeps the provider's id for a step, and reads its status reports."""

    async def accepted(self, key: str, provider_ref: str) -> None:
        """The provider accepted the step `key` and named it `provider_ref`."""
        ...

    async def reported(self, provider_ref: str) -> ProviderReport | None:
        """The provider's last status callback for `provider_ref`, if one arrived."""
        ...


@runtime_checkable
class ResumableProvider(Protocol):
    """A channel that can take up a step again from the provider's id for it."""

    async def resume_call(self, provider_ref: str) -> CallResult:
        """Wait for the outcome of the client's call `provider_ref` (placed earlier)."""
        ...

    async def resume_message(self, provider_ref: str) -> CallResult:
        """Wait for the outcome of the message call `provider_ref` (placed earlier)."""
        ...

    async def resume_text(self, provider_ref: str) -> None:
        """Conclude the text `provider_ref`, which the provider accepted earlier."""
        ...


class DeliveryLedger:
    """The `channel_deliveries` table: claim, settle, release; the provider's ids and reports."""

    def __init__(self, pool: asyncpg.Pool, *, store_backoff_seconds: float = 0.5,
                 store_backoff_max_seconds: float = 10.0) -> None:
        self._store = DeliveryStore(pool)
        self._backoff = store_backoff_seconds
        self._backoff_max = store_backoff_max_seconds

    async def once(self, key: str, deliver: Callable[[], Awaitable[str]],
                   resume: Callable[[str], Awaitable[str]] | None = None) -> str:
        """Run `deliver` at most once for `key`, returning its (recorded) result.

        A claim found pending with the provider's id is taken up by `resume(provider_ref)`
        instead (when the channel can), and settled on its outcome like a first try.
        Raises :class:`DeliveryUncertainError` when an earlier try may have delivered it and
        cannot be resumed; a PostgreSQL outage while claiming propagates (nothing was sent:
        retry freely).
        """
        while True:
            if await self._store.claim(key):
                return await self._settled(key, deliver)
            claim = await self._store.claim_of(key)
            if claim is None:  # released between our insert and select: claim again
                continue
            if claim.state == "done":
                return claim.result or ""
            provider_ref = claim.provider_ref
            if provider_ref is None or resume is None:
                raise DeliveryUncertainError(PENDING_FOUND)
            log.info("delivery_resumed")  # the key names the session: not logged
            return await self._settled(key, functools.partial(resume, provider_ref))

    async def _settled(self, key: str, deliver: Callable[[], Awaitable[str]]) -> str:
        """Run `deliver` for the claimed `key` and record what the provider answered."""
        try:
            result = await deliver()
        except DEFINITE_REFUSALS:
            await self._until_stored(functools.partial(self._store.release, key))
            raise
        except DeliveryUncertainError:
            await self._until_stored(
                functools.partial(self._store.keep_uncertain, key, UNCERTAIN_NOTE))
            raise
        # Anything else (cancelled mid-request, a bug): the claim stays pending, so a
        # retry treats the step as uncertain (or resumes it, if the provider's id is kept).
        await self._until_stored(functools.partial(self._store.settle, key, result))
        return result

    async def accepted(self, key: str, provider_ref: str) -> None:
        """Keep the provider's id on the pending claim `key` (waiting out an outage).

        Kept before the channel waits for the outcome, so that a worker dying meanwhile
        leaves a claim its retry can resume.
        """
        await self._until_stored(functools.partial(self._store.accepted, key, provider_ref))

    async def reported(self, provider_ref: str) -> ProviderReport | None:
        """The provider's last status callback for `provider_ref`, or None."""
        return await self._store.reported(provider_ref)

    async def report(self, provider_ref: str, report: ProviderReport) -> bool:
        """Record a call's final status from its status callback; False if already known.

        A call ends once, so the first report stands (Twilio may post it again).
        """
        return await self._store.report(provider_ref, report)

    async def _until_stored(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run one write, retrying with backoff for as long as PostgreSQL is unreachable."""
        delay = self._backoff
        while True:
            try:
                await write()
            except STORE_UNREACHABLE as error:
                log.warning("delivery_ledger_unreachable", error_type=type(error).__name__,
                            retry_in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
            else:
                return


class AtMostOnce:
    """Any channel, delivered at most once per idempotency key.

    A channel that can resume a step from the provider's id (:class:`ResumableProvider`)
    has a dead worker's pending step taken up again instead of declared uncertain.
    """

    def __init__(self, inner: Provider, ledger: DeliveryLedger) -> None:
        self.inner = inner
        """The provider's channel (the worker closes it at shutdown)."""
        self._inner = inner
        self._ledger = ledger
        self._resumable = inner if isinstance(inner, ResumableProvider) else None

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        """Ring once per key."""

        async def ring() -> str:
            return (await self._inner.call(key, session_id, to)).value

        return CallResult(await self._ledger.once(key, ring, self._resume_call()))

    async def leave_voicemail(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Leave the voicemail once per key."""

        async def leave() -> str:
            return (await self._inner.leave_voicemail(key, session_id, to, text)).value

        return _call_result(await self._ledger.once(key, leave, self._resume_message()))

    async def deliver_message(self, key: str, session_id: str, to: str,
                              text: str) -> CallResult:
        """Deliver the message once per key."""

        async def deliver() -> str:
            return (await self._inner.deliver_message(key, session_id, to, text)).value

        return _call_result(await self._ledger.once(key, deliver, self._resume_message()))

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        """Send the text once per key."""

        async def send() -> str:
            await self._inner.send_text(key, session_id, to, text)
            return "sent"

        await self._ledger.once(key, send, self._resume_text())

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Send the email once per key."""
        await EmailOnce(self._inner, self._ledger).send_email(key, session_id, to, subject, body)

    def _resume_call(self) -> Callable[[str], Awaitable[str]] | None:
        if self._resumable is None:
            return None
        resumable = self._resumable

        async def resume(provider_ref: str) -> str:
            return (await resumable.resume_call(provider_ref)).value

        return resume

    def _resume_text(self) -> Callable[[str], Awaitable[str]] | None:
        if self._resumable is None:
            return None
        resumable = self._resumable

        async def resume(provider_ref: str) -> str:
            await resumable.resume_text(provider_ref)
            return "sent"

        return resume

    def _resume_message(self) -> Callable[[str], Awaitable[str]] | None:
        if self._resumable is None:
            return None
        resumable = self._resumable

        async def resume(provider_ref: str) -> str:
            return (await resumable.resume_message(provider_ref)).value

        return resume


LEGACY_DELIVERED = frozenset({"left", "delivered"})
"""Results recorded before voicemails reported the call's outcome: they were delivered."""


def _call_result(recorded: str) -> CallResult:
    return CallResult.ANSWERED if recorded in LEGACY_DELIVERED else CallResult(recorded)


class EmailOnce:
    """An email-only channel (SMTP), delivered at most once per idempotency key."""

    def __init__(self, inner: EmailProvider, ledger: DeliveryLedger) -> None:
        self.inner = inner
        """The provider's channel."""
        self._ledger = ledger

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        """Send once per key."""

        async def send() -> str:
            await self.inner.send_email(key, session_id, to, subject, body)
            return "sent"

        await self._ledger.once(key, send)
