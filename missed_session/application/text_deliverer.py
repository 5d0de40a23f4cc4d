"""The deliverer: hands kept inbound texts to their sessions, in the HTTP API's process.

It runs wherever the API runs (the app's lifespan starts it: `python -m
missed_session.api`, `up.py`), reads the kept texts from PostgreSQL, so texts kept before
a restart (or by another API process) are picked up, and tries each until its session has
taken it, refused it, or is gone. A text that cannot be delivered yet waits longer after
each try (1 s doubling to a minute). An outage of PostgreSQL or Temporal is waited out:
logged by its error type only, never a number or a text, and never the end of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog

from missed_session.application.kept_texts import KeptTexts
from missed_session.application.service import Application
from missed_session.lifecycle import wait_set
from missed_session.store.kept_texts import Settlement

log = structlog.get_logger(__name__)

FIRST_RETRY = timedelta(seconds=1)
"""The wait after a text's first failed try; it doubles with each try."""
LONGEST_RETRY = timedelta(minutes=1)
"""The longest wait between two tries of a text."""
IDLE_POLL = timedelta(seconds=5)
"""How often the table is read when nothing is due (texts kept by another process)."""
SHORTEST_WAIT = timedelta(seconds=0.25)
"""The shortest wait between two rounds. A text due but not claimed in the round just
ended is being tried by another deliverer (its row is locked): asking again at once would
spin until that try ends."""


def retry_after(attempts: int) -> timedelta:
    """How long a text waits after its `attempts`-th failed try (pure)."""
    doublings = min(max(attempts - 1, 0), 16)
    return min(FIRST_RETRY * float(2**doublings), LONGEST_RETRY)


def next_wait(seconds_to_next: float | None) -> float:
    """Seconds the loop sleeps before its next round (pure).

    `seconds_to_next`: until the next pending text is due, None when none pends. Nothing
    pending: the idle poll (a text kept since, here or by another process). Never less
    than `SHORTEST_WAIT`: an idle deliverer reads one indexed row count every 5 s.
    """
    idle = IDLE_POLL.total_seconds()
    wait = idle if seconds_to_next is None else min(seconds_to_next, idle)
    return max(wait, SHORTEST_WAIT.total_seconds())


class TextDeliverer:
    """Delivers kept texts until stopped."""

    def __init__(self, app: Application, *, kept_texts: KeptTexts | None = None) -> None:
        self._app = app
        self._kept_texts = kept_texts
        self._nudged = asyncio.Event()

    def _texts(self) -> KeptTexts:
        if self._kept_texts is None:
            self._kept_texts = KeptTexts(self._app)
        return self._kept_texts

    async def deliver_due(self) -> dict[Settlement, int]:
        """One round: try every text that is due, oldest first; how each try ended.

        The round stops at the first text that cannot be delivered yet: the next is
        likely held up by the same outage, and each try can wait for a worker. Raises
        what PostgreSQL or the application raised (the loop waits and goes on).
        """
        texts = self._texts()
        store = await texts.store()
        tried: dict[Settlement, int] = {}
        while (text := await store.claim_due()) is not None:
            attempt = await texts.deliver(text)
            tried[attempt.outcome] = tried.get(attempt.outcome, 0) + 1
            if attempt.outcome is Settlement.PENDING:
                delay = retry_after(text.attempts + 1)
                await store.postpone(text.message_id, attempt.error_type or "unknown", delay)
                log.warning("kept_text_not_delivered", message_id=text.message_id,
                            attempts=text.attempts + 1, error=attempt.error_type,
                            retry_in_seconds=delay.total_seconds())
                break
            log.info("kept_text_settled", message_id=text.message_id,
                     outcome=attempt.outcome.value)
        return tried

    async def retry_now(self) -> int:
        """Make every pending text due now and wake the loop (after an outage ends)."""
        count = await (await self._texts().store()).retry_now()
        self.wake()
        return count

    def wake(self) -> None:
        """End the loop's current wait: it reads the table (and tries what is due) now."""
        self._nudged.set()

    async def run(self) -> None:
        """Deliver until cancelled; errors are logged by type and waited out."""
        failures = 0
        while True:
            try:
                await self.deliver_due()
                wait = await (await self._texts().store()).seconds_to_next()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # an outage (or a fault): wait and go on
                failures += 1
                wait = retry_after(failures).total_seconds()
                log.warning("kept_text_deliverer_error", error=type(error).__name__,
                            retry_in_seconds=wait)
            await self._sleep(next_wait(wait))

    async def _sleep(self, seconds: float) -> None:
        await wait_set(self._nudged, seconds)
        self._nudged.clear()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TextDeliverer]:
        """Run the loop as a task for the duration of the block."""
        task = asyncio.create_task(self.run(), name="kept-text-deliverer")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
