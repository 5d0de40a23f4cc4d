"""Heartbeats while an activity waits on something slow (a provider, a ringing call).

Temporal notices a dead worker's activity only by its missing heartbeats: with a
heartbeat timeout of about 10 s, a step whose worker died is retried within seconds
instead of after its whole start-to-close timeout. Heartbeats are also how an activity
learns it was cancelled, and they carry details to the next try (the outreach activities'
count of provider failures).

The first heartbeat goes after the interval, not at once (issue 28 item 2): a step that is
done sooner (most are) costs the server no heartbeat write. Nothing is lost by waiting:

- the server's heartbeat timeout runs from the try's start, so a dead worker's step is
  noticed as soon as before;
- a cancellation reaches an activity only in the server's answer to a heartbeat
  (temporalio's core, `activity_heartbeat_manager.rs`: the answer's `cancel_requested`
  becomes the cancel that the Python SDK turns into `CancelledError` in the activity's
  task). The SDK sends an activity's first heartbeat at once and throttles the later ones
  to one per 0.8 x the heartbeat timeout (8 s for the steps' 10 s), sending the latest
  details at the end of each window. Heartbeating at once opened that window at the start,
  so a step stopped in its first seconds heard of it about 8 s after it began; now the first
  heartbeat, after 2 s, is the one sent at once, and it hears of it then
  (`tests/test_step_heartbeat.py`);
- details for the next try are sent when they change: the outreach activities heartbeat
  their new count of provider failures just before the try fails. In a try that had not
  heartbeated yet (a provider that fails fast) that is the try's first heartbeat, sent at
  once, and the SDK waits for a heartbeat in flight before it reports the try's end
  (`evict`); in a longer try it is throttled, and flushed with the failure as before. A
  try that never heartbeats leaves the details of the try before it on the server (the
  count it started from).
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
    """Await `awaitable`, heartbeating `details` every `every` seconds, the first after `every`.

    If the activity is cancelled, the awaited work is cancelled too, and allowed to finish
    its own clean-up (the delivery ledger keeps an interrupted step pending) before the
    cancellation propagates.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat(*details)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the cancellation is what propagates
