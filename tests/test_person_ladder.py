"""Outreach is to a person (issue 25): one ladder per person, and clients without a phone.

Through the real interfaces: bookings over HTTP (a real uvicorn) and the CLI, a real worker,
the time-skipping Temporal server, a real PostgreSQL. What is checked is what a client and
a therapist would see: the calls and messages the simulated phone placed, the trails, the
therapist's inbox and the follow-up plans.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from missed_session.domain.events import read
from missed_session.domain.models import AuditEvent, SessionResult, workflow_id_for
from missed_session.domain.protocol import NO_MOBILE, NO_PHONE
from tests.support.factories import booking, booking_data, daytime
from tests.support.http_api import Served, served  # noqa: F401 (a fixture)
from tests.support.session_workflow import (
    SENDER,
    begin,
    every,
    inbox,
    placed,
    sleep_until,
    stored_plan,
    trail,
    types,
)
from tests.support.starter import cli, cli_env, future_start, running_worker, temporal_env  # noqa: F401 (fixtures)
from worker import new_worker

SHARED_PHONE = "+14155550142"
FOUR_ATTEMPTS = {"max_attempts": 4, "clinician_wait_hours": 1}
"""Spacing 15 and grace 15 (the defaults): a ladder from +15 to +60 minutes, so a session
30 minutes later is declared a no-show (+45) while the first one's ladder runs."""


def client_data(ref: str, phone: str | None = SHARED_PHONE, **more: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"ref": ref, "first_name": "Robin", "time_zone": "America/New_York",
                            **more}
    if phone is not None:
        data["phone"] = phone
    return data


async def book_http(served: Served, data: dict[str, Any]) -> None:  # noqa: F811
    async with served.client() as http:
        response = await http.post("/sessions", json=data)
    assert response.status_code == 201, response.text


async def finished(env: WorkflowEnvironment, start: datetime) -> None:
    """Skip the server's clock past every ladder these tests run (they end within hours)."""
    await env.sleep(start + timedelta(hours=4) - await env.get_current_time())


async def result(client: Client, session_id: str) -> SessionResult:
    handle = client.get_workflow_handle(workflow_id_for(session_id), result_type=SessionResult)
    done: SessionResult = await handle.result()
    return done


def calls(events: list[AuditEvent]) -> list[datetime]:
    return [event.occurred_at for event in every(events, "outreach_attempted")]


def plan_related(plan: str | None) -> list[str]:
    assert plan is not None
    related: list[str] = json.loads(plan)["related_sessions"]
    return related


async def test_two_sessions_of_one_client_share_one_ladder_and_one_alert(
    served: Served, time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,  # noqa: F811
    client: Client,
) -> None:
    start = await future_start(time_skipping_env)
    first, second = "s-first", "s-second"
    await book_http(served, booking_data(session_id=first, client=client_data("c-robin"),
                                         start=start.isoformat(), protocol=FOUR_ATTEMPTS))
    await book_http(served, booking_data(
        session_id=second, client={"ref": "c-robin"},  # ref only: from the directory
        start=(start + timedelta(minutes=30)).isoformat(), protocol=FOUR_ATTEMPTS))

    await finished(time_skipping_env, start)
    joined, led = await result(client, second), await result(client, first)

    # One set of calls: the first session's ladder, nothing from the second.
    assert [kind for _, kind, _, _ in await placed(pool, second)] == []
    assert [kind for _, kind, _, _ in await placed(pool, first)].count("call") == 4
    leader_trail, joiner_trail = await trail(pool, first), await trail(pool, second)
    spaced = calls(leader_trail)
    assert all(later - earlier >= timedelta(minutes=15)
               for earlier, later in itertools.pairwise(spaced))
    # Both trails refer to each other; the joiner closes with the leader's outcome.
    assert read(every(leader_trail, "outreach_joined")[0]).model_dump() == {"joiner": second}
    assert read(every(joiner_trail, "joined_outreach")[0]).model_dump() == {
        "leader": first, "rule": "join"}
    ended = read(every(joiner_trail, "joined_outreach_ended")[0]).model_dump()
    assert (ended["outcome"], ended["own_ladder"]) == (led.outcome, False)
    assert joined.outcome is led.outcome
    assert "outreach_attempted" not in types(joiner_trail)
    # One no-show alert about the second session, naming the first.
    alerts = [row["title"] for row in (await inbox(pool, second)).values()
              if row["title"].startswith("No-show")]
    assert len(alerts) == 1
    assert first in alerts[0]
    # The plans refer to each other.
    assert plan_related(await stored_plan(pool, first)) == [second]
    assert plan_related(await stored_plan(pool, second)) == [first]


async def test_two_client_refs_sharing_a_number_are_one_person(
    served: Served, time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,  # noqa: F811
    client: Client,
) -> None:
    start = await future_start(time_skipping_env)
    await book_http(served, booking_data(session_id="s-kim", client=client_data("c-kim"),
                                         start=start.isoformat(), protocol=FOUR_ATTEMPTS))
    await book_http(served, booking_data(
        session_id="s-kim-2", client=client_data("c-kim-2"),
        start=(start + timedelta(minutes=30)).isoformat(), protocol=FOUR_ATTEMPTS))
    # The person calls back through the second session: the one ladder stops, reached.
    await time_skipping_env.sleep(start + timedelta(minutes=50)
                                  - await time_skipping_env.get_current_time())
    assert "joined_outreach" in types(await trail(pool, "s-kim-2"))
    async with served.client() as http:
        response = await http.post("/sessions/s-kim-2/responded",
                                   json={"channel": "call", "note": "sorry, I overslept"})
    assert response.status_code == 200, response.text

    await finished(time_skipping_env, start)
    joined, led = await result(client, "s-kim-2"), await result(client, "s-kim")

    assert (joined.outcome.value, led.outcome.value) == ("reached", "reached")
    responded = read(every(await trail(pool, "s-kim"), "client_responded")[0]).model_dump()
    assert "via session s-kim-2" in responded["note"]
    assert [kind for _, kind, _, _ in await placed(pool, "s-kim-2")] == []


async def test_the_practice_may_space_the_ladders_instead(
    served: Served, time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,  # noqa: F811
    client: Client,
) -> None:
    start = await future_start(time_skipping_env)
    spaced = {**FOUR_ATTEMPTS, "same_person": "space", "escalate_after": {"standard": None}}
    await book_http(served, booking_data(session_id="s-a", client=client_data("c-lee"),
                                         start=start.isoformat(), protocol=spaced))
    await book_http(served, booking_data(
        session_id="s-b", client=client_data("c-lee"),
        start=(start + timedelta(minutes=30)).isoformat(), protocol=spaced))

    await finished(time_skipping_env, start)
    await result(client, "s-b")
    await result(client, "s-a")

    first, second = calls(await trail(pool, "s-a")), calls(await trail(pool, "s-b"))
    assert len(first) == 4
    assert len(second) == 4
    assert min(second) >= max(first) + timedelta(minutes=15)  # one ladder at a time
    ended = read(every(await trail(pool, "s-b"), "joined_outreach_ended")[0]).model_dump()
    assert ended["own_ladder"] is True


async def test_an_email_only_client_is_booked_on_the_command_line_and_emailed(
    cli_env: None, running_worker: Worker, time_skipping_env: WorkflowEnvironment,  # noqa: F811
    pool: asyncpg.Pool, client: Client, tmp_path: Path,
) -> None:
    start = await future_start(time_skipping_env)
    booking = booking_data(session_id="s-mail", start=start.isoformat(), client=client_data(
        "c-mail", phone=None, email="robin@example.org", preferences={"email": True}),
        protocol={"max_attempts": 1, "clinician_wait_hours": 1})
    path = tmp_path / "booking.json"
    path.write_text(json.dumps(booking), encoding="utf-8")

    assert await cli("schedule", "--file", str(path)) == 0
    await finished(time_skipping_env, start)
    await result(client, "s-mail")

    events = await trail(pool, "s-mail")
    skipped = {(e.data["channel"], e.data["reason"]) for e in every(events, "outreach_skipped")}
    assert skipped == {("call", NO_PHONE), ("voicemail", NO_PHONE)}
    sent = [e.data["channel"] for e in every(events, "message_sent")]
    assert sent
    assert set(sent) == {"email"}
    assert {kind for _, kind, _, _ in await placed(pool, "s-mail")} == {"email"}


async def test_a_client_with_neither_phone_nor_email_is_refused_naming_the_field(
    served: Served, time_skipping_env: WorkflowEnvironment,  # noqa: F811
) -> None:
    start = await future_start(time_skipping_env)
    data = booking_data(session_id="s-none", start=start.isoformat(),
                        client=client_data("c-none", phone=None))
    async with served.client() as http:
        response = await http.post("/sessions", json=data)
    assert response.status_code == 422, response.text
    assert "phone" in response.json()["message"]
    assert "no phone number and no email address" in response.json()["message"]


async def test_a_landline_only_client_is_called_and_the_text_skipped_with_the_reason(
    served: Served, time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,  # noqa: F811
    client: Client,
) -> None:
    start = await future_start(time_skipping_env)
    clients = await served.application.clients()  # as `starter.py clients add` does
    added = await clients.add({"ref": "c-land", "first_name": "Pat",
                               "time_zone": "America/New_York",
                               "phones": [{"number": "+14155550166", "use": "home"}]},
                              recorded_by="t-ana", source="client_request")
    assert added.ok, added.message
    async with served.client() as http:
        response = await http.post("/sessions", json={
            "session_id": "s-land", "client": {"ref": "c-land"}, "therapist_id": "t-ana",
            "start": start.isoformat(),
            "protocol": {"channels": ["call", "voicemail", "text"], "max_attempts": 1,
                         "clinician_wait_hours": 1}})
    assert response.status_code == 201, response.text

    await finished(time_skipping_env, start)
    await result(client, "s-land")

    events = await trail(pool, "s-land")
    assert [e.data["reason"] for e in every(events, "outreach_skipped")
            if e.data["channel"] == "text"] == [NO_MOBILE]
    assert [kind for _, kind, _, _ in await placed(pool, "s-land")][:1] == ["call"]


async def test_a_joined_ladder_survives_a_worker_restart(
    client: Client, pool: asyncpg.Pool, task_queue: str,
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    start = daytime(await env.get_current_time() + timedelta(hours=1))
    first, second = (booking(session_id=f"s-restart-{n}", client=client_data("c-restart"),
                             start=(start + timedelta(minutes=30 * n)).isoformat(),
                             protocol=FOUR_ATTEMPTS) for n in (0, 1))
    # No sticky cache: every workflow task replays the history, as after a restart, and the
    # second worker takes over at once (no sticky queue to time out on the test server).
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER,
                          max_cached_workflows=0):
        await begin(client, task_queue, first)
        joiner = await begin(client, task_queue, second)
        await sleep_until(env, start + timedelta(minutes=50))
        assert "joined_outreach" in types(await trail(pool, second.session_id))
    # A new worker: both sessions carry on from their histories.
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER,
                          max_cached_workflows=0):
        await sleep_until(env, start + timedelta(hours=4))
        joined = await joiner.result()
        led = await result(client, first.session_id)
    assert joined.outcome is led.outcome
    assert await placed(pool, second.session_id) == []
    assert "outreach_joined" in types(await trail(pool, first.session_id))
