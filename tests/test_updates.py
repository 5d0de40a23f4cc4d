"""A client's message is sent under one update id until the session has taken it.

Temporal's answers are played by a stand-in for the Temporal client, one scripted answer per
request, so each of the SDK's failure modes seen across a dev-server restart (an RPC error,
a timeout, NOT_FOUND for an update only admitted when the server went down) is met in turn;
the fault suite's Temporal-restart scenarios do it against a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import pytest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from missed_session.api.routes import answer
from missed_session.application import sessions, updates
from missed_session.application.sessions import InFlight, Sessions
from missed_session.application.updates import Stage, send_update
from missed_session.domain.models import ClientResponse, ResponseChannel

NOT_FOUND = RPCError("update not found", RPCStatusCode.NOT_FOUND, b"")
UNAVAILABLE = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


@dataclass
class _Update:
    answer: object

    async def result(self, **_: object) -> object:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@dataclass
class _Described:
    status: WorkflowExecutionStatus


@dataclass
class FakeTemporal:
    """Answers each start_update with the next scripted answer; records the ids sent."""

    starts: list[object]
    status: WorkflowExecutionStatus | None = WorkflowExecutionStatus.RUNNING
    ids: list[str] = field(default_factory=list)

    def get_workflow_handle(self, workflow_id: str) -> FakeTemporal:
        return self

    async def start_update(self, name: str, payload: object, *, id: str,
                           **_: object) -> _Update:
        self.ids.append(id)
        answer = self.starts.pop(0) if self.starts else UNAVAILABLE
        if isinstance(answer, BaseException):
            raise answer
        return cast(_Update, answer)

    async def describe(self) -> _Described:
        if self.status is None:
            raise NOT_FOUND
        return _Described(self.status)

    async def fetch_history_events(self, **_: object) -> AsyncIterator[Any]:
        return
        yield


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(updates, "FIRST_RETRY", 0.01)
    monkeypatch.setattr(updates, "LONGEST_RETRY", 0.02)


async def send(fake: FakeTemporal, wait: timedelta | None = None) -> updates.Sent:
    return await send_update(cast(Client, fake), "session-1", "client_responded", {},
                             update_id="call-back-1", wait=wait)


async def test_an_update_lost_with_a_restart_is_sent_again_under_the_same_id() -> None:
    """NOT_FOUND for a running session is an update the restart dropped, not an answer."""
    fake = FakeTemporal([UNAVAILABLE, WorkflowUpdateRPCTimeoutOrCancelledError(), NOT_FOUND,
                         _Update(NOT_FOUND), _Update("responded")])
    sent = await send(fake)
    assert (sent.stage, sent.answer) == (Stage.COMPLETED, "responded")
    assert fake.ids == ["call-back-1"] * 5


async def test_a_closed_session_that_never_took_it_is_gone_and_a_refusal_settles() -> None:
    closed = FakeTemporal([NOT_FOUND], status=WorkflowExecutionStatus.COMPLETED)
    assert (await send(closed)).stage is Stage.GONE
    assert (await send(FakeTemporal([NOT_FOUND], status=None))).stage is Stage.GONE
    refused = WorkflowUpdateFailedError(ApplicationError("the session has closed its ladder"))
    sent = await send(FakeTemporal([_Update(refused)]))
    assert (sent.stage, sent.reason) == (Stage.REFUSED, "the session has closed its ladder")
    closing = WorkflowUpdateFailedError(ApplicationError(
        "closed", type=updates.CLOSED_WITH_UPDATE))
    assert (await send(FakeTemporal([_Update(closing)]))).stage is Stage.TAKEN


async def test_with_a_wait_it_says_how_far_the_message_got() -> None:
    never = await send(FakeTemporal([]), wait=timedelta(seconds=0.2))
    assert never.stage is Stage.NO_ANSWER
    assert not never.took_it
    slow = WorkflowUpdateRPCTimeoutOrCancelledError()
    held = await send(FakeTemporal([_Update(slow)] * 100), wait=timedelta(seconds=0.2))
    assert held.stage is Stage.ACCEPTED  # in the history: the session has it
    assert held.took_it


async def test_a_client_message_not_taken_in_time_is_answered_kept_and_sent_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within a sender's patience: 202 kept, and the same update id goes on being sent."""
    monkeypatch.setattr(sessions, "SENDER_PATIENCE", timedelta(seconds=0.2))
    fake = FakeTemporal([UNAVAILABLE] * 30 + [_Update("responded")])
    in_flight = InFlight()
    use_cases = Sessions(cast(Client, fake), task_queue="q", in_flight=in_flight)
    response = ClientResponse(channel=ResponseChannel.CALL, responder="client")
    result = await use_cases.respond("s-1", response)
    assert result.ok
    assert result.data is not None
    assert result.data["delivery"] == "kept"
    assert len(in_flight) == 1
    for _ in range(200):
        if not len(in_flight):
            break
        await asyncio.sleep(0.02)
    assert not len(in_flight)
    assert not fake.starts  # the last answer, "responded", was reached
    assert len(set(fake.ids)) == 1  # one update id, however often it was sent
    assert answer(result).status_code == 202
    await in_flight.close()
