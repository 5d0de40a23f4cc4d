"""The faults, each injected at a step the harness sees in the trail or the channel's records.

A fault waits for its step by watching (audit rows, the channel's deliveries, the follow-up
plans table), never by sleeping a guessed time, and notes what the trails showed at the
moment it struck: on a loaded machine the step may have moved on, and the note says so.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from faults.checks import Findings, hangs_ended, refusals_honoured
from faults.clients import Script
from faults.count import SessionRecord
from faults.harness import ChannelName, Harness
from missed_session.domain.models import AuditEventType, Outcome

Fault = Callable[[Harness, "Size"], Awaitable[None]]
Check = Callable[[Harness, Sequence[SessionRecord]], Findings]
"""A scenario's own check, after the counts: what became of the steps its fault struck."""
HOLD_SECONDS = 3.0
"""How long the webhook receiver keeps a held step open (the worker dies meanwhile)."""
TEMPORAL_DOWN_SECONDS = 5.0
"""How long the Temporal dev server stays down before it is restarted on its file."""


@dataclass(frozen=True)
class Size:
    """How big a run is."""

    name: str
    scripts: tuple[Script, ...]
    """One session per script in every scenario."""
    postgres_outage: float
    """Seconds PostgreSQL stays down in the outage scenario."""
    settle: float
    """Seconds a scenario waits, after its fault, for every session to end."""
    time_scale: float = 60.0
    parallel: int = 1
    """Scenarios run at the same time (each on its own servers)."""


EVERY_SCRIPT = tuple(Script)
SIZES = {
    "smoke": Size("smoke", (Script.CALLS_BACK, Script.UNREACHABLE_CONSENT,
                            Script.UNREACHABLE_NO_CONSENT),
                  postgres_outage=20.0, settle=240.0, parallel=3),
    "full": Size("full", EVERY_SCRIPT, postgres_outage=60.0, settle=300.0, parallel=3),
}


# -- the worker, killed at each step of the ladder -------------------------------------------


async def kill_before_start(run: Harness, size: Size) -> None:
    """Every session is booked (its `scheduled` row written) and none has started."""
    async def booked() -> bool:
        sessions = {row.session_id for row in await run.rows() if row.event_type == "scheduled"}
        return len(sessions) == len(run.sessions)

    await run.until("every scheduled row", booked, 60)
    early = datetime.now(UTC) < run.first_start
    await run.kill_worker("before the start" if early else "AFTER the start (late)")


async def kill_in_grace_period(run: Harness, size: Size) -> None:
    """The sessions have started; no grace period has expired yet."""
    async def started() -> bool:
        return datetime.now(UTC).timestamp() > run.first_start.timestamp() + 1

    await run.until("the start", started, 60)
    expired = any(row.event_type == "grace_period_expired" for row in await run.rows())
    await run.kill_worker("in the grace period" + (" (one had expired already)" if expired
                                                   else ""))


async def kill_during_call(run: Harness, size: Size) -> None:
    """A call is in the channel's hands: held open by the receiver, or just placed."""
    if run.receiver is not None:
        hold = run.receiver.hold("call", HOLD_SECONDS)
        await asyncio.wait_for(hold.seen.wait(), 120)
        await run.kill_worker("while the receiver held a call open")
        return
    await run.until_effect("call")
    await run.kill_worker("as the simulated phone recorded a call")


async def kill_after_voicemail(run: Harness, size: Size) -> None:
    """The channel has recorded the first voicemail."""
    await run.until_effect("voicemail")
    await run.kill_worker("right after a voicemail")


async def kill_while_recording(run: Harness, size: Size) -> None:
    """Just after an audit row written by a local activity commits (twice: a step, `closed`).

    The row is in PostgreSQL while the workflow task that wrote it may not have completed:
    the retried task must not conflict with its own first write.
    """
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    await run.kill_worker("as the first outreach_attempted row appeared")
    await run.until_event(AuditEventType.CLOSED, size.settle)
    await run.kill_worker("as the first closed row appeared")


async def kill_during_escalation(run: Harness, size: Size) -> None:
    """The emergency contact's message is in the channel's hands."""
    if run.receiver is not None:
        hold = run.receiver.hold("message", HOLD_SECONDS)
        await asyncio.wait_for(hold.seen.wait(), 180)
        await run.kill_worker("while the receiver held the emergency contact's message")
        return
    await run.until_effect("message", 180)
    await run.kill_worker("as the emergency contact's message was recorded")


async def kill_during_follow_up(run: Harness, size: Size) -> None:
    """A follow-up plan is saved and its `plan_created` row may not be."""
    async def planned() -> bool:
        try:
            return bool(await run.pool.fetchval("SELECT count(*) FROM follow_up_plans"))
        except Exception:  # not readable yet: keep watching
            return False

    await run.until("a saved follow-up plan", planned, 180)
    await run.kill_worker("as the first follow-up plan was saved")


# -- the servers ---------------------------------------------------------------------------


async def _temporal_restart(run: Harness, sig: signal.Signals) -> None:
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    await run.temporal.stop(sig)
    run.note(f"Temporal dev server {sig.name}; trails: {await run.describe_trails()}")
    await asyncio.sleep(TEMPORAL_DOWN_SECONDS)
    await run.temporal.start()
    run.note("Temporal dev server restarted on its database file")
    await asyncio.sleep(2)
    await run.ensure_worker()


async def temporal_sigterm(run: Harness, size: Size) -> None:
    """The dev server is stopped cleanly during outreach, and restarted on its file."""
    await _temporal_restart(run, signal.SIGTERM)


async def temporal_sigkill(run: Harness, size: Size) -> None:
    """The dev server is killed during outreach, and restarted on its file."""
    await _temporal_restart(run, signal.SIGKILL)


async def postgres_outage(run: Harness, size: Size) -> None:
    """PostgreSQL is stopped during outreach for `size.postgres_outage` seconds."""
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    await run.postgres.stop()
    began = time.monotonic()
    run.note(f"PostgreSQL stopped (fast shutdown) for {size.postgres_outage:.0f} s")
    await asyncio.sleep(size.postgres_outage)
    await run.postgres.start()
    run.note(f"PostgreSQL started again after {time.monotonic() - began:.0f} s")
    await run.ensure_worker()


async def kill_worker_and_postgres(run: Harness, size: Size) -> None:
    """Worker and PostgreSQL SIGKILLed together during outreach; PostgreSQL recovers first."""
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    trails = await run.describe_trails()
    await asyncio.gather(run.worker.stop(signal.SIGKILL), run.postgres.kill())
    run.note(f"worker and PostgreSQL SIGKILLed together; trails: {trails}")
    await asyncio.sleep(5)
    await run.postgres.start()
    await run.worker.start()
    run.note("PostgreSQL (crash recovery) and the worker restarted")


# -- the channel ---------------------------------------------------------------------------


async def webhook_5xx(run: Harness, size: Size) -> None:
    """The practice's system answers 503 to the next four requests, then recovers."""
    assert run.receiver is not None
    await run.until_event(AuditEventType.GRACE_PERIOD_EXPIRED)
    run.receiver.fail_next = 4
    run.note("receiver answers the next 4 requests with 503")


async def webhook_timeout_after_acceptance(run: Harness, size: Size) -> None:
    """The practice's system accepts a call and answers only after the channel's timeout."""
    assert run.receiver is not None
    hold = run.receiver.hold("call", 12.0)
    await asyncio.wait_for(hold.seen.wait(), 120)
    run.note("receiver accepted a call and holds its answer 12 s (channel timeout 10 s)")


REFUSED_STEPS = ("/attempt-2/call", "/escalation")
"""The steps the refusing provider answers 400: the second attempt's call (an attempt that
goes on to its next step) and the emergency contact's message (an escalation blocked)."""
HUNG_STEPS = REFUSED_STEPS
"""The steps the hung provider takes and never answers."""


async def webhook_4xx(run: Harness, size: Size) -> None:
    """The practice's system refuses the second call and the emergency contact's message."""
    receiver = run.receiver
    assert receiver is not None
    receiver.refuse_steps = REFUSED_STEPS
    run.note(f"receiver answers 400 to every {' and '.join(REFUSED_STEPS)} request")

    async def refused() -> bool:
        return bool(receiver.rejections)

    await run.until("a refused request", refused, 180)


async def webhook_hangs(run: Harness, size: Size) -> None:
    """The practice's system takes the second call and the contact's message, never answers."""
    receiver = run.receiver
    assert receiver is not None
    receiver.hang_steps = HUNG_STEPS
    run.note(f"receiver takes every {' and '.join(HUNG_STEPS)} request and never answers")

    async def hung() -> bool:
        return bool(receiver.hung)

    await run.until("a request left hanging", hung, 180)


def refusals_recorded(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """Each refused step: sent once, recorded as rejected by the channel."""
    assert run.receiver is not None
    return refusals_honoured(run.receiver.rejections, records)


def hangs_recorded(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """Each hung step: sent once, recorded as uncertain in bounded time."""
    assert run.receiver is not None
    return hangs_ended(run.receiver.hung, records)


@dataclass(frozen=True)
class Scenario:
    """A fault, and the channel the sessions run through."""

    name: str
    fault: Fault
    channel: ChannelName = "simulated"
    expected: Mapping[Script, Outcome] = field(default_factory=dict)
    """Scripts whose correct outcome this fault changes (the others keep the script's)."""
    check: Check | None = None


def _both(name: str, fault: Fault) -> list[Scenario]:
    return [Scenario(f"{name} [simulated]", fault), Scenario(f"{name} [webhook]", fault,
                                                             "webhook")]


SCENARIOS: list[Scenario] = [
    Scenario("worker SIGKILL before the start", kill_before_start),
    Scenario("worker SIGKILL in the grace period", kill_in_grace_period),
    *_both("worker SIGKILL during a call", kill_during_call),
    *_both("worker SIGKILL after a voicemail", kill_after_voicemail),
    *_both("worker SIGKILL as audit rows commit", kill_while_recording),
    *_both("worker SIGKILL during escalation", kill_during_escalation),
    *_both("worker SIGKILL during follow-up planning", kill_during_follow_up),
    Scenario("Temporal SIGTERM + restart", temporal_sigterm),
    *_both("Temporal SIGKILL + restart", temporal_sigkill),
    *_both("PostgreSQL stopped", postgres_outage),
    *_both("worker + PostgreSQL SIGKILL", kill_worker_and_postgres),
    Scenario("webhook 5xx burst [webhook]", webhook_5xx, "webhook"),
    Scenario("webhook timeout after acceptance [webhook]", webhook_timeout_after_acceptance,
             "webhook"),
    Scenario("webhook 4xx refusal [webhook]", webhook_4xx, "webhook",
             # the emergency contact's message refused: blocked, the therapist has a task
             expected={Script.UNREACHABLE_CONSENT: Outcome.UNREACHABLE_ESCALATION_BLOCKED},
             check=refusals_recorded),
    Scenario("webhook provider hangs [webhook]", webhook_hangs, "webhook",
             check=hangs_recorded),
]
"""The full size runs all of these; the smoke size the ones named in SMOKE."""
SMOKE = [
    "worker SIGKILL before the start",
    "worker SIGKILL in the grace period",
    "worker SIGKILL as audit rows commit [simulated]",
    "Temporal SIGTERM + restart",
    "PostgreSQL stopped [simulated]",
    "webhook 5xx burst [webhook]",
]
