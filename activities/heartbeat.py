"""Heartbeats while an activity waits on something slow (a provider, a ringing call).

Temporal notices a dead worker's activity only by its missing heartbeats: with a
heartbeat timeout of about 10 s, a step whose worker died is retried within seconds
instead of after its whole start-to-close timeout. Heartbeats are also how an activity
learns it was cancelled, and they carry details to the next try (the outreach activities'
count of provider failures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

HEARTBEAT_SECONDS = 2.0
"""How often to heartbeat while waiting: well inside a 10 s heartbeat timeout (the SDK
throttles what it sends to the server anyway)."""


async def heartbeating(awaitable: Awaitable[T], *details: Any,
                       every: float = HEARTBEAT_SECONDS) -> T:
    """Await `awaitable`, heartbeating `details` at once and then every `every` seconds.

    If the activity is cancelled, the awaited work is cancelled too, and allowed to finish
    its own clean-up (the delivery ledger keeps an interrupted step pending) before the
    cancellation propagates.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            activity.heartbeat(*details)
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the cancellation is what propagates
