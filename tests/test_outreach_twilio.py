"""Provider faults on the Twilio path: the outreach activities under a real Temporal server,
the official SDK against the local Twilio-wire server (tests/support/twilio_wire.py), the delivery
ledger in a real PostgreSQL.

Each test runs one step from the activity tests' small workflow, which retries it the way
contract A says the session workflow does (no maximum of attempts, a heartbeat timeout).
What each fault must come to (contract A): a 4xx is ChannelRejected and never re-sent; 5xx
answers are counted across the step's tries and end it as ChannelFailed after K; a create
with no answer after it was sent is DeliveryUncertain; a Twilio that stops answering polls
is bounded by the polling deadline while the step heartbeats, and no second call is placed;
a worker that dies while its call rings leaves the call's SID on the claim, and the retry
on another worker resumes that call instead of calling again or giving up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.outreach import (
    CHANNEL_FAILED,
    CHANNEL_REJECTED,
    DELIVERY_UNCERTAIN,
    INVALID_CONTACT,
    OutreachActivities,
)
from missed_session.channels.ledger import AtMostOnce, DeliveryLedger
from missed_session.channels.twilio import TwilioProvider
from missed_session.domain.models import CallResult, EscalationRequest, OutreachRequest
from tests.support.factories import booking
from tests.support.outreach_activity import PROVIDER_TRIES, SENDER, Step, StepWorkflow, failure_type
from tests.support.twilio_wire import CALLBACK, FROM, FakeTwilio, twilio_server

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(BasicAuth|'auth' parameter).*:DeprecationWarning"
)


def step(activity: str, name: str) -> Step:
    """One step of a fresh session: a client step, or the escalation call."""
    session = booking(session_id=f"{name}-{uuid.uuid4().hex[:8]}")
    if activity == "call_emergency_contact":
        contact = session.client.emergency_contact
        assert contact is not None
        return Step(activity, escalation=EscalationRequest(
            idempotency_key=f"{session.workflow_id}/escalation",
            session_id=session.session_id, client_ref=session.client.ref,
            client_first_name=session.client.first_name, contact=contact,
        ))
    kind = {"call_client": "call", "leave_voicemail": "voicemail", "send_text": "text"}
    return Step(activity, outreach=OutreachRequest(
        idempotency_key=f"{session.workflow_id}/attempt-1/{kind[activity]}",
        session_id=session.session_id, client=session.client,
    ))


def key_of(the_step: Step) -> str:
    request = the_step.outreach or the_step.escalation
    assert request is not None
    return request.idempotency_key


def outreach_activities(channel: AtMostOnce, *, heartbeat_seconds: float = 0.3) -> list[
        Callable[..., Awaitable[Any]]]:
    outreach = OutreachActivities(channel, SENDER, channel, provider_tries=PROVIDER_TRIES,
                                  heartbeat_seconds=heartbeat_seconds)
    return [outreach.call_client, outreach.leave_voicemail, outreach.send_text,
            outreach.send_email, outreach.call_emergency_contact]


def wire(client: Any, pool: asyncpg.Pool, **options: Any) -> AtMostOnce:
    """The Twilio channel as the worker wires it (the ledger keeps each SID)."""
    ledger = DeliveryLedger(pool)
    settings: dict[str, Any] = {"poll_seconds": 0.01, "max_polls": 20,
                                "request_timeout_seconds": 0.5, **options}
    return AtMostOnce(TwilioProvider(client, from_number=FROM, callback_number=CALLBACK,
                                    receipts=ledger, **settings), ledger)


async def run(client: Client, pool: asyncpg.Pool, fake: FakeTwilio, the_step: Step,
              **options: Any) -> str | None:
    """Run `the_step` on a worker of its own against `fake`."""
    task_queue = f"tq-{uuid.uuid4().hex}"
    async with twilio_server(fake) as (twilio, _), Worker(
        client, task_queue=task_queue, workflows=[StepWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
        activities=outreach_activities(wire(twilio, pool, **options)),
    ):
        return await client.execute_workflow(
            StepWorkflow.run, the_step, id=f"step-{uuid.uuid4().hex}", task_queue=task_queue,
        )


async def claim(pool: asyncpg.Pool, the_step: Step) -> tuple[str, str | None, str | None] | None:
    row = await pool.fetchrow(
        "SELECT state, result, provider_ref FROM channel_deliveries WHERE idempotency_key = $1",
        key_of(the_step),
    )
    return None if row is None else (row["state"], row["result"], row["provider_ref"])


@pytest.mark.parametrize(("activity", "error", "expected"), [
    ("send_text", (400, 21610), CHANNEL_REJECTED),  # the recipient texted STOP
    ("call_client", (403, 20003), CHANNEL_REJECTED),  # authentication
    ("leave_voicemail", (400, 21211), INVALID_CONTACT),
    ("call_emergency_contact", (400, 21205), CHANNEL_REJECTED),  # a bad Url/Twiml
])
async def test_a_4xx_ends_the_step_and_is_never_resent(
    client: Client, pool: asyncpg.Pool, activity: str, error: tuple[int, int], expected: str,
) -> None:
    fake = FakeTwilio(error=error)
    the_step = step(activity, "refused")
    with pytest.raises(WorkflowFailureError) as failed:
        await run(client, pool, fake, the_step)
    assert failure_type(failed.value) == expected
    assert len(fake.created) == 1
    assert await claim(pool, the_step) is None  # refused: nothing held back


@pytest.mark.parametrize("activity", ["send_text", "call_client", "call_emergency_contact"])
async def test_5xx_answers_are_counted_per_step_and_end_it_after_k(
    client: Client, pool: asyncpg.Pool, activity: str,
) -> None:
    fake = FakeTwilio(error=(503, 20500))
    the_step = step(activity, "failing")
    with pytest.raises(WorkflowFailureError) as failed:
        await run(client, pool, fake, the_step)
    assert failure_type(failed.value) == CHANNEL_FAILED
    # Counted across the activity's retries (heartbeat details), not per try.
    assert len(fake.created) == PROVIDER_TRIES
    assert await claim(pool, the_step) is None


async def test_a_twilio_that_recovers_within_k_tries_places_one_call(
    client: Client, pool: asyncpg.Pool,
) -> None:
    fake = FakeTwilio(errors=[(500, 20500), (429, 20429)])
    the_step = step("call_emergency_contact", "recovers")
    assert await run(client, pool, fake, the_step) == str(
        {"result": CallResult.ANSWERED.value, "consent_record": None})
    assert len(fake.created) == PROVIDER_TRIES  # two refused, one placed
    assert await claim(pool, the_step) == ("done", "answered", fake.created_sid(2))


@pytest.mark.parametrize("activity", ["send_text", "call_emergency_contact"])
async def test_a_create_unanswered_after_it_was_sent_is_uncertain_and_not_resent(
    client: Client, pool: asyncpg.Pool, activity: str,
) -> None:
    fake = FakeTwilio(hang_on_create=True)
    the_step = step(activity, "timeout")
    with pytest.raises(WorkflowFailureError) as failed:
        await run(client, pool, fake, the_step)
    assert failure_type(failed.value) == DELIVERY_UNCERTAIN
    assert len(fake.created) == 1
    # No SID came back: nothing to resume, the claim is kept.
    assert await claim(pool, the_step) == ("pending", "uncertain", None)


async def test_a_twilio_that_hangs_on_polls_is_bounded_and_calls_once(
    client: Client, pool: asyncpg.Pool,
) -> None:
    # Every poll hangs until its request timeout: longer in all than the heartbeat timeout
    # (2 s), so only the step's heartbeats keep it alive; the polling deadline ends it.
    fake = FakeTwilio(hang_on_fetch=True)
    the_step = step("call_emergency_contact", "hangs")
    with pytest.raises(WorkflowFailureError) as failed:
        await run(client, pool, fake, the_step, max_polls=6, request_timeout_seconds=0.5)
    assert failure_type(failed.value) == DELIVERY_UNCERTAIN
    assert len(fake.created) == 1
    assert await claim(pool, the_step) == ("pending", "uncertain", fake.created_sid())


async def test_an_unknown_answer_to_a_voicemail_is_uncertain_not_left(
    client: Client, pool: asyncpg.Pool,
) -> None:
    fake = FakeTwilio(call_statuses=[("in-progress", "unknown"), ("completed", "unknown")])
    the_step = step("leave_voicemail", "unknown")
    with pytest.raises(WorkflowFailureError) as failed:
        await run(client, pool, fake, the_step)
    assert failure_type(failed.value) == DELIVERY_UNCERTAIN
    assert len(fake.created) == 1


@pytest.mark.parametrize(("activity", "statuses", "expected"), [
    ("call_client", [("ringing", None), ("in-progress", "human")], CallResult.ANSWERED),
    ("call_emergency_contact", [("ringing", None), ("completed", "machine_end_beep")],
     CallResult.ANSWERED),
    ("call_emergency_contact", [("ringing", None), ("no-answer", None)],
     CallResult.NO_ANSWER),
])
async def test_a_worker_that_dies_while_its_call_rings_is_resumed_by_the_calls_sid(
    client: Client, pool: asyncpg.Pool, activity: str,
    statuses: list[tuple[str, str | None]], expected: CallResult,
) -> None:
    # The first worker places the call and then stops dead during its first poll: no more
    # heartbeats, no answer, its only activity slot held. After the heartbeat timeout the
    # retry runs on a second worker, finds the claim pending with the call's SID, and polls
    # that call: the outcome is the provider's, and the call is placed once.
    polls: list[str] = []
    froze = asyncio.Event()

    async def the_first_poll_never_returns() -> None:
        polls.append("poll")
        if len(polls) == 1:
            froze.set()
            await asyncio.Event().wait()

    fake = FakeTwilio(call_statuses=statuses, on_fetch=the_first_poll_never_returns)
    the_step = step(activity, "dies")
    task_queue = f"tq-{uuid.uuid4().hex}"
    async with twilio_server(fake) as (twilio, _):
        dying = Worker(
            client, task_queue=task_queue, workflows=[StepWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(), max_concurrent_activities=1,
            # Never heartbeats (the first would come after 600 s): as silent as a killed process.
            activities=outreach_activities(wire(twilio, pool, request_timeout_seconds=600),
                                           heartbeat_seconds=600),
        )
        async with dying:
            handle = await client.start_workflow(
                StepWorkflow.run, the_step, id=f"step-{uuid.uuid4().hex}",
                task_queue=task_queue,
            )
            await asyncio.wait_for(froze.wait(), timeout=30)
            assert await claim(pool, the_step) == ("pending", None, fake.created_sid())
            # Another worker process: its own connection and runtime (one process may
            # not run two workers of one task queue).
            other = await Client.connect(
                client.service_client.config.target_host, namespace=client.namespace,
                data_converter=client.data_converter,
                runtime=Runtime(telemetry=TelemetryConfig()),
            )
            async with Worker(
                other, task_queue=task_queue, workflows=[StepWorkflow],
                workflow_runner=UnsandboxedWorkflowRunner(),
                activities=outreach_activities(wire(twilio, pool)),
            ):
                result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result == str({"result": expected.value, "consent_record": None})
    assert len(fake.created) == 1  # never placed twice
    assert set(fake.fetched) == {fake.created_sid()}
    assert await claim(pool, the_step) == ("done", expected.value, fake.created_sid())
