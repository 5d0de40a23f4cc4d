"""Caring contacts offered at an unresolved end, and a reply routed to the therapist.

Issue 27 item 2, the rest: the session workflow on the time-skipping server offers the
series as the practice says (`confirm`: a task, whose acceptance through the application
starts the series; `automatic`: the series starts), and a client's text with no open
session reaches the running series through the inbound use case, which records it and
gives the therapist a notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from missed_session.application import Application
from missed_session.application.caring import CaringContacts
from missed_session.application.inbound import TextKind, receive_text
from missed_session.application.results import ResultKind
from missed_session.config import Settings
from missed_session.domain import caring, events
from missed_session.domain.clients import consents_from_booking, record_from_booking
from missed_session.domain.models import (
    CaringOffer,
    ClinicianDecision,
    Outcome,
    RiskTier,
    SessionBooking,
)
from missed_session.domain.practice import PracticeFileError, parse
from missed_session.store.audit import AuditStore
from tests.support.caring_contacts import PHONE as CARING_PHONE
from tests.support.caring_contacts import unresolved_session
from tests.support.factories import read_as
from tests.support.inbound_texts import dev_server
from tests.support.servers import TEST_KEYS
from tests.support.session_workflow import SENDER, inbox, run, trail, types
from worker import new_worker

__all__ = ["dev_server"]  # the fixture, shared

DECISION = ClinicianDecision(clinician_id="t-ana", reason="accepting the offer")


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER) as running:
        yield running


# -- the decision and the practice file (pure) --------------------------------------------


@given(mode=st.sampled_from(list(CaringOffer)), risk=st.sampled_from(list(RiskTier)),
       outcome=st.sampled_from(list(Outcome)))
def test_a_series_is_offered_only_after_an_unresolved_end_for_a_client_at_risk(
    mode: CaringOffer, risk: RiskTier, outcome: Outcome,
) -> None:
    offered = caring.offered(mode, risk, outcome)
    expected = (mode is not CaringOffer.OFF and risk in {RiskTier.ELEVATED, RiskTier.HIGH}
                and outcome in {Outcome.UNREACHABLE_ESCALATED,
                                Outcome.UNREACHABLE_ESCALATION_BLOCKED})
    assert offered == (mode if expected else None)


PRACTICE = """
version = "1"
[protocols.standard]
channels = ["call"]
[protocols.own]
caring_offer = "off"
[caring_contacts]
offer = "confirm"
"""


def test_the_practice_file_says_how_the_series_is_offered() -> None:
    practice = parse(PRACTICE, "practice.toml")
    assert practice.protocols["standard"].caring_offer is CaringOffer.CONFIRM
    assert practice.protocols["own"].caring_offer is CaringOffer.OFF
    assert parse('version = "1"\n[protocols.a]\n', "p.toml").protocols["a"].caring_offer \
        is CaringOffer.OFF
    with pytest.raises(PracticeFileError, match=r"caring_contacts\.offer: must be one of"):
        parse(PRACTICE.replace('"confirm"', '"always"'), "practice.toml")
    with pytest.raises(PracticeFileError, match=r"caring_contacts\.days: unknown setting"):
        parse(PRACTICE + "days = [1]\n", "practice.toml")


# -- the session offers it ------------------------------------------------------------------


async def at_risk_session(env: WorkflowEnvironment, pool: asyncpg.Pool,
                          offer: CaringOffer) -> SessionBooking:
    """A high-risk client who will not answer, in the directory with text consent."""
    from tests.support.session_workflow import book

    session = await book(env, risk_tier="high",
                         protocol={"max_attempts": 1, "channels": ["call"],
                                   "caring_offer": offer.value})
    client = session.client.model_copy(update={
        "preferences": session.client.preferences.model_copy(update={"text": True})})
    from missed_session.store.clients import ClientDirectory

    await ClientDirectory(pool).add(
        record_from_booking(client, None), source="test", recorded_by="test",
        # Before both clocks: the activity reads consent "as of" the worker's wall clock,
        # which the time-skipping server may have left far behind.
        consents=consents_from_booking(
            client, at=min(session.start, datetime.now(UTC)) - timedelta(days=30),
            recorded_by="test"))
    return session


@pytest.mark.usefixtures("worker")
async def test_confirm_gives_the_therapist_a_task_and_accepting_starts_the_series(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    session = await at_risk_session(time_skipping_env, pool, CaringOffer.CONFIRM)

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    rows = await trail(pool, session.session_id)
    assert types(rows)[-3:] == ["plan_created", "caring_offered", "closed"]
    offered = read_as(rows[-2], events.CaringOffered)
    series_id = caring.series_id(session.client.ref, session.session_id)
    assert (offered.mode, offered.series_id) == (CaringOffer.CONFIRM, series_id)
    assert offered.task == f"{session.session_id}/caring-offer"
    task = (await inbox(pool, session.session_id))[offered.task]
    assert task["kind"] == "task"
    assert f"caring start {session.session_id}" in task["title"]
    with pytest.raises(Exception, match="not found"):  # nothing started without a person
        await client.get_workflow_handle(series_id).describe()

    now = await time_skipping_env.get_current_time()
    started = await CaringContacts(client, pool, task_queue=task_queue,
                                   clock=lambda: now).start(session.session_id, DECISION)

    assert started.kind is ResultKind.STARTED, started.message
    assert (await client.get_workflow_handle(series_id).describe()).status \
        is WorkflowExecutionStatus.RUNNING
    # Ended here: a series left waiting on this test's task queue would hold the shared
    # test server's clock for every later test.
    ended = await CaringContacts(client, pool, task_queue=task_queue,
                                 clock=lambda: now).end(series_id, DECISION)
    assert ended.kind is ResultKind.APPLIED, ended.message


@pytest.mark.usefixtures("worker")
async def test_automatic_starts_the_series_as_the_session_closes(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    session = await at_risk_session(time_skipping_env, pool, CaringOffer.AUTOMATIC)

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    rows = await trail(pool, session.session_id)
    offered = read_as(rows[-2], events.CaringOffered)
    assert (offered.mode, offered.task) == (CaringOffer.AUTOMATIC, None)
    series_id = offered.series_id
    # The first message is due on day 1, inside the client's window.
    for _ in range(8):  # in steps: one long skip can outlast the test server's RPC
        series = await AuditStore(pool).trail(series_id)
        if "caring_sent" in types(series):
            break
        await time_skipping_env.sleep(timedelta(hours=6))
    assert types(series)[:2] == ["caring_started", "caring_sent"]
    started = read_as(series[0], events.CaringStarted)
    assert started.started_by == caring.STARTED_BY_PROTOCOL
    now = await time_skipping_env.get_current_time()
    ended = await CaringContacts(client, pool, task_queue=task_queue,
                                 clock=lambda: now).end(series_id, DECISION)
    assert ended.kind is ResultKind.APPLIED, ended.message



async def test_a_reply_with_no_open_session_reaches_the_series_and_the_therapist(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    """Through the inbound use case the text routes call, on a dev server (visibility)."""
    client = dev_server.client
    now = await dev_server.get_current_time()
    ref, session_id = f"c-reply-{task_queue[-8:]}", f"s-reply-{task_queue[-8:]}"
    await unresolved_session(pool, ref, session_id, now - timedelta(hours=2))
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER), \
            Application(settings, client=client, pool=pool) as application:
        started = await CaringContacts(client, pool, task_queue=task_queue,
                                       clock=lambda: now).start(session_id, DECISION)
        assert started.kind is ResultKind.STARTED, started.message
        series_id = caring.series_id(ref, session_id)
        for _ in range(100):  # its first record: the series is running
            if await AuditStore(pool).trail(series_id):
                break
            await asyncio.sleep(0.1)
        answer = await receive_text(application, phone=CARING_PHONE,
                                    body="thank you, that means a lot", message_id="SM-r1")
        again = await receive_text(application, phone=CARING_PHONE,
                                   body="thank you, that means a lot", message_id="SM-r1")
        await CaringContacts(client, pool, task_queue=task_queue, clock=lambda: now).end(
            series_id, DECISION)

    assert answer.kind is TextKind.RESPONSE
    assert answer.result.kind is ResultKind.APPLIED, answer.result.message
    assert again.result.kind is ResultKind.APPLIED
    series = await AuditStore(pool).trail(series_id)
    replies = [read_as(e, events.CaringReplied) for e in series
               if e.event_type == "caring_replied"]
    assert len(replies) == 1  # the provider's redelivery reached the series once
    assert replies[0].note == "thank you, that means a lot"
    notice = (await inbox(pool, series_id))[replies[0].notice]
    assert (notice["therapist_id"], notice["kind"]) == ("t-ana", "task")
    assert "replied to a caring message" in notice["title"]
    assert "thank you" not in notice["title"]
