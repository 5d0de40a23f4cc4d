"""The person's running ladder asked on the way (issue 28): no round before the first call.

When the client may be reached at the no-show, the session's first step asks whether the
person's ladder already runs, before it sends anything; otherwise a local activity asks at
once, and before any escalation a ladder not yet asked about is asked about. These tests
take the two other ways through the real parts (HTTP bookings, a real worker, the
time-skipping server, PostgreSQL); tests/test_person_ladder.py takes the first. The last
test plays the adversary of the documented limit of the first way (docs/protocol.md,
"Where the question is asked"): the alert's read and the first step's read disagree.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from missed_session.domain import events
from missed_session.domain.events import read
from missed_session.domain.models import (
    Modality,
    Outcome,
    RiskTier,
    SessionBooking,
    SessionResult,
    workflow_id_for,
)
from missed_session.store.audit import AuditStore
from tests.support.after_activity import AfterActivity
from tests.support.factories import booking, booking_data, daytime, read_as
from tests.support.http_api import Served, served  # noqa: F401 (a fixture)
from tests.support.session_workflow import (
    GRACE,
    SENDER,
    begin,
    every,
    inbox,
    placed,
    sleep_until,
    trail,
    types,
)
from tests.support.starter import future_start
from worker import new_worker

SHARED_PHONE = "+14155550142"
FOUR_ATTEMPTS = {"max_attempts": 4, "clinician_wait_hours": 1}


def client_data(ref: str, **more: object) -> dict[str, object]:
    return {"ref": ref, "first_name": "Robin", "time_zone": "America/New_York",
            "phone": SHARED_PHONE, **more}


async def book(served: Served, **data: object) -> None:  # noqa: F811
    async with served.client() as http:
        response = await http.post("/sessions", json=booking_data(**data))
    assert response.status_code == 201, response.text


async def outcome(client: Client, session_id: str) -> SessionResult:
    handle = client.get_workflow_handle(workflow_id_for(session_id), result_type=SessionResult)
    done: SessionResult = await handle.result()
    return done


async def joined(pool: asyncpg.Pool, joiner: str, leader: str) -> list[str]:
    """The joiner followed the leader: nothing sent, its one alert names the leader.

    Returns the joiner's trail (event types).
    """
    assert [kind for _, kind, _, _ in await placed(pool, joiner)] == []
    events = await trail(pool, joiner)
    assert read(every(events, "joined_outreach")[0]).model_dump()["leader"] == leader
    assert not {"outreach_attempted", "escalation_blocked", "escalation_sent",
                "voicemail_left"} & set(types(events))
    alerts = [row["title"] for row in (await inbox(pool, joiner)).values()
              if row["title"].startswith("No-show")]
    assert len(alerts) == 1
    assert leader in alerts[0]
    return types(events)


async def test_a_no_show_outside_the_contact_window_asks_at_once(
    served: Served, time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,  # noqa: F811
    client: Client,
) -> None:
    # The first session's ladder runs at 20:30 and 20:45, then waits for 08:00; the second
    # is declared a no-show at 21:05, outside the window, while the first still runs.
    evening = daytime(await future_start(time_skipping_env), hour=20) + timedelta(minutes=15)
    await book(served, session_id="s-eve", client=client_data("c-eve"),
               start=evening.isoformat(), protocol=FOUR_ATTEMPTS)
    await book(served, session_id="s-eve-2", client={"ref": "c-eve"},
               start=(evening + timedelta(minutes=35)).isoformat(), protocol=FOUR_ATTEMPTS)

    await time_skipping_env.sleep(evening + timedelta(days=1)
                                  - await time_skipping_env.get_current_time())
    second, first = await outcome(client, "s-eve-2"), await outcome(client, "s-eve")

    assert "outreach_skipped" not in await joined(pool, "s-eve-2", "s-eve")
    assert second.outcome is first.outcome


async def test_a_joiner_whose_steps_are_all_skipped_asks_before_it_escalates(
    served: Served, time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,  # noqa: F811
    client: Client,
) -> None:
    # The second booking has no consent for any channel and no emergency contact: no step
    # of its ladder runs an activity that could ask, and its protocol would block an
    # escalation (an urgent task for the therapist). It must ask first, and join.
    start = await future_start(time_skipping_env)
    await book(served, session_id="s-jo", client=client_data("c-jo"),
               start=start.isoformat(), protocol=FOUR_ATTEMPTS)
    silent = client_data("c-jo-2", emergency_contact=None, preferences={
        "call": False, "voicemail": False, "text": False, "email": False})
    await book(served, session_id="s-jo-2", client=silent,
               start=(start + timedelta(minutes=30)).isoformat(), protocol=FOUR_ATTEMPTS)

    await time_skipping_env.sleep(start + timedelta(hours=4)
                                  - await time_skipping_env.get_current_time())
    await outcome(client, "s-jo-2")
    await outcome(client, "s-jo")

    # Its steps were skipped, each recorded with why (nothing reached anyone), and then,
    # instead of the blocked escalation's urgent task, it joined the running ladder.
    steps = await joined(pool, "s-jo-2", "s-jo")
    assert steps.index("joined_outreach") > steps.index("outreach_skipped")


async def ladder_running(pool: asyncpg.Pool, session: SessionBooking, leader: str,
                         expired: datetime) -> None:
    """`leader`, a session of the same client, in outreach since `expired`: its trail is
    booked and past its grace period (no workflow runs it; only its rows are read)."""
    start = expired - GRACE
    store = AuditStore(pool)
    for sequence, (at, details) in enumerate([
        (start, events.Scheduled(client_ref=session.client.ref, therapist_id="t-ana",
                                 start=start, duration_minutes=50, modality=Modality.IN_PERSON,
                                 risk_tier=RiskTier.STANDARD, grace_period_minutes=15)),
        (expired, events.GracePeriodExpired(grace_period_minutes=15)),
    ], start=1):
        assert (await store.record([events.new_event(
            session_id=leader, sequence=sequence, occurred_at=at, details=details)])).new


async def ladder_over(pool: asyncpg.Pool, leader: str, at: datetime) -> None:
    """`leader`'s outreach ended: its trail is closed."""
    assert (await AuditStore(pool).record([events.new_event(
        session_id=leader, sequence=3, occurred_at=at,
        details=events.Closed(outcome=Outcome.REACHED, attempts=1))])).new


class BetweenTheReads(AfterActivity):
    """The person's ladder changes between the alert's read and the first step's.

    The first step (`call_client`) is held until the no-show's records are written
    (`document_no_show` read the ladder for the alert's words); `change` runs just then.
    Two reads a few milliseconds apart, made as far apart as the test needs.
    """

    def __init__(self, change: Callable[[], Awaitable[None]]) -> None:
        super().__init__("document_no_show", "call_client")
        self.change = change
        self.changed = asyncio.Event()

    async def before_activity(self, info: activity.Info) -> None:
        if info.activity_type == "call_client" and info.attempt == 1:
            await asyncio.wait_for(self.changed.wait(), timeout=60)

    async def after_activity(self, info: activity.Info) -> None:
        if info.activity_type == "document_no_show" and not self.changed.is_set():
            await self.change()
            self.changed.set()


@pytest.mark.parametrize("ladder", ["ends", "begins"])
async def test_a_ladder_that_ends_or_begins_between_the_two_reads(
    client: Client, pool: asyncpg.Pool, task_queue: str,
    time_skipping_env: WorkflowEnvironment, ladder: str,
) -> None:
    # docs/protocol.md: the alert's words and the first step's answer are two reads; a
    # ladder that begins or ends between them gives an alert that disagrees with what the
    # step found, and the trail records the step's answer. Made to happen here.
    env = time_skipping_env
    start = await future_start(env)
    session = booking(start=start.isoformat(),
                      protocol={"max_attempts": 1, "clinician_wait_hours": 1})
    leader = f"s-lead-{uuid.uuid4().hex[:8]}"
    expired = start + GRACE - timedelta(minutes=1)  # a no-show before this session's
    if ladder == "ends":
        await ladder_running(pool, session, leader, expired)
        between = BetweenTheReads(lambda: ladder_over(pool, leader, start + GRACE))
    else:
        between = BetweenTheReads(lambda: ladder_running(pool, session, leader, expired))

    async with new_worker(between.client_with(client), pool, task_queue=task_queue,
                          sender=SENDER):
        handle = await begin(client, task_queue, session)
        await sleep_until(env, start + timedelta(hours=4))
        result = await handle.result()

    assert between.changed.is_set()
    alerts = [row["title"] for row in (await inbox(pool, session.session_id)).values()
              if row["title"].startswith("No-show")]
    recorded = await trail(pool, session.session_id)
    joined = [read_as(e, events.JoinedOutreach).leader
              for e in every(recorded, "joined_outreach")]
    steps = types(recorded)
    if ladder == "ends":
        # The alert's read found the ladder, the step's did not: the alert names a leader
        # (and says this session joined it) that the session never joined; the trail has
        # the step the session took, its own ladder's first call.
        assert [leader in title for title in alerts] == [True]
        assert joined == []
        assert steps.index("outreach_attempted") == steps.index("therapist_alerted") + 1
    else:
        # The alert's read found none, the step's found it: the alert names no leader; the
        # trail has the join, and no step before it (the step was refused before sending).
        # This leader never answers (no workflow runs it), so the session then runs its
        # own ladder, as for any leader that ended without telling.
        assert [leader in title for title in alerts] == [False]
        assert joined == [leader]
        assert steps.index("joined_outreach") == steps.index("therapist_alerted") + 1
        assert steps.index("outreach_attempted") > steps.index("joined_outreach_ended")
    assert steps.count("outreach_attempted") == 1
    sent = [(key, kind) for key, kind, _, _ in await placed(pool, session.session_id)]
    assert len(sent) == len(set(sent))  # nothing sent twice
    assert [kind for _, kind in sent].count("call") == 1
    assert steps.count("closed") == 1  # one outcome
    assert steps[-1] == "closed"
    assert read_as(recorded[-1], events.Closed).outcome is result.outcome
