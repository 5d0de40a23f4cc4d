"""A message to a session, sent until the session has taken it.

Every client message (a call-back from the phone's dispatcher, a kept text from the
deliverer, a check-in, response or text from the API or the CLI) reaches its session as a
workflow update with an id chosen once, before the first try. Temporal answers a repeated
update id with the first update's outcome, so sending again is always safe; and sending
again is necessary, because an update Temporal has only *admitted* lives in the history
service's memory until the workflow accepts it: a dev-server (or history-shard) restart in
between drops it, and the SDK's `execute_update` then raises (an RPC error, or NOT_FOUND
from the poll for its outcome, temporalio/features#432) where it should resend.

`send_update` resends under the same id until the update is *completed* (the handler
answered, or the validator or handler refused it) or the session is closed. A NOT_FOUND is
never taken at its word: the workflow is described, and a running one is sent the update
again; a closed one is read to tell "took it before it closed" from "gone". With a `wait`,
it stops resending at the deadline and says how far the update got: `accepted` (in the
history, durable: the session applies it when it can) or `no_answer` (not yet in the
history: the caller keeps it and sends again with the same id).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import structlog
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

log = structlog.get_logger(__name__)

RPC_TRY = timedelta(seconds=10)
"""The longest one request to Temporal may take before it is sent again."""
FIRST_RETRY = 0.25
"""Seconds before the second try; doubling up to `LONGEST_RETRY`."""
LONGEST_RETRY = 2.0
"""The longest pause between two tries: Temporal coming back must not find the message asleep."""
CLOSED_WITH_UPDATE = "AcceptedUpdateCompletedWorkflow"
"""The failure type Temporal gives an accepted update whose workflow closed before it answered."""


class Stage(StrEnum):
    """How far a message got."""

    COMPLETED = "completed"
    """The session's handler answered: it has taken it."""
    REFUSED = "refused"
    """The session's validator (or handler) refused it: settled, never to be sent again."""
    TAKEN = "taken"
    """The session accepted it and has closed since (its history holds the update)."""
    ACCEPTED = "accepted"
    """In the session's history (durable) and not yet answered when the wait ran out."""
    GONE = "gone"
    """The session is closed (or never existed) and never took it."""
    NO_ANSWER = "no_answer"
    """Not yet in the session's history when the wait ran out: send it again, same id."""


SETTLED = frozenset({Stage.COMPLETED, Stage.REFUSED, Stage.TAKEN, Stage.GONE})
"""The stages after which sending again changes nothing."""
TOOK_IT = frozenset({Stage.COMPLETED, Stage.TAKEN, Stage.ACCEPTED})
"""The stages at which the session holds the message (it cannot be lost any more)."""


@dataclass(frozen=True)
class Sent:
    """What sending a message did."""

    stage: Stage
    answer: str | None = None
    """The handler's answer (completed)."""
    reason: str | None = None
    """Refused: the session's reason; gone or taken: the workflow's status; no answer: what
    stood in the way (an error's type, never its message)."""

    @property
    def settled(self) -> bool:
        """Whether sending again could change anything."""
        return self.stage in SETTLED

    @property
    def took_it(self) -> bool:
        """Whether the session holds the message."""
        return self.stage in TOOK_IT


async def send_update(client: Client, workflow_id: str, name: str, payload: object, *,
                      update_id: str, wait: timedelta | None) -> Sent:
    """Send update `name` under `update_id` until the session answered, refused or is gone.

    `wait`: how long to keep sending (None: until settled, whatever happens). The update id
    must be chosen before the first call and reused on every later one.
    """
    deadline = None if wait is None else time.monotonic() + wait.total_seconds()
    accepted = False
    delay = FIRST_RETRY
    why = "none"
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return Sent(Stage.ACCEPTED if accepted else Stage.NO_ANSWER, reason=why)
        rpc = RPC_TRY if remaining is None else min(RPC_TRY, timedelta(seconds=remaining))
        try:
            bound = rpc.total_seconds() + 1.0
            if remaining is not None:
                bound = min(bound, remaining + 0.1)
            async with asyncio.timeout(bound):  # the caller's deadline holds, retries or not
                handle = client.get_workflow_handle(workflow_id)
                update = await handle.start_update(
                    name, payload, id=update_id, result_type=str,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED, rpc_timeout=rpc)
                accepted = True
                answer = await update.result(rpc_timeout=rpc)
            return Sent(Stage.COMPLETED, answer=str(answer))
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == CLOSED_WITH_UPDATE:
                return Sent(Stage.TAKEN, reason="closed before it answered")
            reason = cause.message if isinstance(cause, ApplicationError) else str(error)
            return Sent(Stage.REFUSED, reason=reason)
        except RPCError as error:
            why = error.status.name if error.status is not None else type(error).__name__
            if error.status is RPCStatusCode.NOT_FOUND:
                closed = await _closed(client, workflow_id, update_id)
                if closed is not None:
                    return closed
                why = "UpdateLost"  # a running session that does not know it: send again
        except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError) as error:
            why = type(error).__name__
        log.info("update_sent_again", workflow_id=workflow_id, update_id=update_id,
                 reason=why, accepted=accepted, retry_in_seconds=delay)
        pause = delay if remaining is None else min(delay, max(0.0, remaining))
        await asyncio.sleep(pause)
        delay = min(delay * 2, LONGEST_RETRY)


async def _closed(client: Client, workflow_id: str, update_id: str) -> Sent | None:
    """For a NOT_FOUND: None while the workflow runs, else whether it took the update.

    Raises RPCError (Temporal unreachable): the caller's loop sends again.
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return Sent(Stage.GONE, reason="no such session")
        return None
    if description.status is WorkflowExecutionStatus.RUNNING:
        return None
    status = description.status.name.lower() if description.status else "closed"
    try:
        if await took_update(client, workflow_id, update_id):
            return Sent(Stage.TAKEN, reason=status)
    except RPCError:
        return None
    return Sent(Stage.GONE, reason=status)


async def took_update(client: Client, workflow_id: str, update_id: str) -> bool:
    """Whether the workflow's history shows it accepted the update with this id."""
    handle = client.get_workflow_handle(workflow_id)
    async for event in handle.fetch_history_events(page_size=200):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes
            if accepted.accepted_request.meta.update_id == update_id:
                return True
    return False
