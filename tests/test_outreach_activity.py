"""The outreach activities under a real Temporal server, against a local practice system.

Each test runs one step (an outreach activity) from a small workflow that retries it the
way contract A says the session workflow does: no maximum of attempts, a short backoff and
a heartbeat timeout. The webhook receiver speaks the real wire format and counts what it
was asked to deliver; the delivery ledger sits in a real PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import ActivityEnvironment

from activities.outreach import (
    CHANNEL_FAILED,
    CHANNEL_REJECTED,
    DELIVERY_UNCERTAIN,
    UNCERTAIN_REASON,
    TextPolicyActivities,
)
from missed_session.domain.contact_window import local_day
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    CallResult,
    EscalationRequest,
    TextCheck,
)
from missed_session.store.audit import AuditStore
from tests.support.factories import booking
from tests.support.outreach_activity import (
    PROVIDER_TRIES,
    PracticeSystem,
    Step,
    failure_type,
    ledger_row,
    practice,  # noqa: F401 - fixtures, used by name
    run_step,
    text_step,
)


async def test_a_provider_that_keeps_failing_fails_the_step_after_k_tries(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],  # noqa: F811
) -> None:
    system, url = practice
    system.script = ["503"]
    step = text_step("k-failures")
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step)
    assert failure_type(failed.value) == CHANNEL_FAILED
    # Counted across the activity's retries (heartbeat details), not per try.
    assert len(system.requests) == PROVIDER_TRIES
    assert await ledger_row(pool, step) is None  # refused each time: nothing held back


async def test_a_provider_that_recovers_within_k_tries_delivers_once(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],  # noqa: F811
) -> None:
    system, url = practice
    system.script = ["503", "503", "ok"]
    step = text_step("recovers")
    await run_step(client, pool, url, step)
    assert len(system.requests) == PROVIDER_TRIES
    assert await ledger_row(pool, step) == ("done", "sent")


async def test_a_refusal_is_not_retried(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],  # noqa: F811
) -> None:
    system, url = practice
    system.script = ["400"]
    step = text_step("refused")
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step)
    assert failure_type(failed.value) == CHANNEL_REJECTED
    assert len(system.requests) == 1
    assert await ledger_row(pool, step) is None


@pytest.mark.parametrize("action", ["hang", "drop"])
async def test_a_step_the_provider_may_have_accepted_is_uncertain_and_not_resent(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str], action: str,  # noqa: F811
) -> None:
    system, url = practice
    system.script = [action, "ok"]
    step = text_step(f"uncertain-{action}")
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step, timeout_seconds=0.5)
    assert failure_type(failed.value) == DELIVERY_UNCERTAIN
    assert len(system.requests) == 1  # never sent again
    assert await ledger_row(pool, step) == ("pending", "uncertain")  # the claim is kept


async def test_a_step_left_pending_by_a_dead_worker_is_uncertain(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],  # noqa: F811
) -> None:
    system, url = practice
    step = text_step("dead-worker")
    assert step.outreach is not None
    await pool.execute(
        "INSERT INTO channel_deliveries (idempotency_key, state) VALUES ($1, 'pending')",
        step.outreach.idempotency_key,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(client, pool, url, step)
    assert failure_type(failed.value) == DELIVERY_UNCERTAIN
    assert system.requests == []


async def test_a_slow_provider_is_waited_for_with_heartbeats(
    client: Client, pool: asyncpg.Pool, practice: tuple[PracticeSystem, str],  # noqa: F811
) -> None:
    # The answer takes 4 s, twice the heartbeat timeout: only heartbeats keep the try alive
    # (otherwise its retry would find the step pending and call it uncertain).
    system, url = practice
    system.script = ["slow-ok"]
    session = booking(session_id="slow")
    contact = session.client.emergency_contact
    assert contact is not None
    step = Step("call_emergency_contact", escalation=EscalationRequest(
        idempotency_key=f"{session.workflow_id}/escalation", session_id=session.session_id,
        client_ref=session.client.ref, client_first_name=session.client.first_name,
        contact=contact,
    ))
    # A client the directory does not know: the booking's contact, no consent record.
    assert await run_step(client, pool, url, step) == str(
        {"result": CallResult.ANSWERED.value, "consent_record": None})
    assert [r["kind"] for r in system.requests] == ["message"]


async def test_a_text_whose_delivery_is_uncertain_counts_for_the_one_a_day_rule(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    failed_at = datetime(2026, 11, 28, 18, 15, tzinfo=UTC)  # 10:15 in Los Angeles
    for session_id, reason in [("s-uncertain", UNCERTAIN_REASON),
                               ("s-failed", "channel failed after retries")]:
        for sequence, (event_type, data) in enumerate([
            (AuditEventType.SCHEDULED, {"client_ref": f"c-{session_id}"}),
            (AuditEventType.OUTREACH_FAILED, {"attempt": 1, "channel": "text",
                                              "reason": reason}),
        ], start=1):
            await store.record([AuditEvent(session_id=session_id, sequence=sequence,
                                          event_type=event_type, occurred_at=failed_at,
                                          data=data)])
    start, end = local_day(failed_at + timedelta(hours=2), "America/Los_Angeles")
    policy = TextPolicyActivities(pool)

    async def refusal(client_ref: str) -> str | None:
        check = TextCheck(client_ref=client_ref, day_start=start, day_end=end)
        answer: str | None = await ActivityEnvironment().run(policy.text_refusal, check)
        return answer

    # It may have reached the client: no second text today.
    assert await refusal("c-s-uncertain") == "a text was already sent today"
    assert await refusal("c-s-failed") is None  # refused by the provider: it did not
