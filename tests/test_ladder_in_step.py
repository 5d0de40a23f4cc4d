"""The person's running ladder asked on the way (issue 28): no round before the first call.

When the client may be reached at the no-show, the session's first step asks whether the
person's ladder already runs, before it sends anything; otherwise a local activity asks at
once, and before any escalation a ladder not yet asked about is asked about. These tests
take the two other ways through the real parts (HTTP bookings, a real worker, the
time-skipping server, PostgreSQL); tests/test_person_ladder.py takes the first.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from missed_session.domain.events import read
from missed_session.domain.models import SessionResult, workflow_id_for
from tests.support.factories import booking_data, daytime
from tests.support.http_api import Served, served  # noqa: F401 (a fixture)
from tests.support.session_workflow import every, inbox, placed, trail, types
from tests.support.starter import future_start

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
