"""The worker: runs session workflows and their activities.

Activities are class instances that hold the database pool and the channel, built once here
so that every activity reuses one pool rather than connecting per call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit import AuditActivities
from activities.follow_up import FollowUpActivities
from activities.outreach import OutreachActivities, Sender, TextPolicyActivities
from activities.therapist import TherapistActivities
from missed_session.channels.base import MessageChannel, PhoneChannel
from missed_session.channels.ledger import DeliveryLedger
from missed_session.channels.setup import channels_from_settings
from missed_session.channels.simulated import CallbackDispatcher, SimulatedPhone
from missed_session.config import Settings, load_settings
from missed_session.domain.models import ClientResponse, ResponseChannel, workflow_id_for
from missed_session.log_setup import configure_logging
from missed_session.metrics import ServiceMetrics
from missed_session.store.audit import AuditStore
from missed_session.store.database import database_url, open_pool
from missed_session.temporal_client import connect, service_runtime
from workflows.session import SessionWorkflow

log = structlog.get_logger(__name__)

WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("email_validator", "idna")
)
"""Pydantic imports the email validator lazily; passing it through keeps it out of replays."""


def new_worker(
    client: Client,
    pool: asyncpg.Pool,
    *,
    task_queue: str,
    sender: Sender,
    phone: PhoneChannel | None = None,
    messages: MessageChannel | None = None,
) -> Worker:
    """A worker with the session workflow and every activity it calls.

    Without channels given, the simulated phone places calls and sends texts and email.
    """
    store = AuditStore(pool)
    runtime = client.service_client.config.runtime or Runtime.default()
    audit = AuditActivities(store, ServiceMetrics(runtime.metric_meter))
    simulated = SimulatedPhone(pool)
    outreach = OutreachActivities(phone or simulated, sender, messages or simulated)
    text_policy = TextPolicyActivities(pool)
    therapist = TherapistActivities(store)
    follow_up = FollowUpActivities(store)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SessionWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            audit.record_event,
            audit.record_closing,
            outreach.call_client,
            outreach.leave_voicemail,
            outreach.send_text,
            outreach.send_email,
            text_policy.text_refusal,
            outreach.call_emergency_contact,
            therapist.notify_therapist,
            follow_up.create_follow_up_plan,
        ],
    )


def callback_dispatcher(client: Client, pool: asyncpg.Pool) -> CallbackDispatcher:
    """Deliver the simulated phone's call-backs as `client_responded` signals."""

    async def deliver(session_id: str) -> None:
        handle = client.get_workflow_handle(workflow_id_for(session_id))
        await handle.signal(
            SessionWorkflow.client_responded,
            ClientResponse(channel=ResponseChannel.CALL, responder="client",
                           note="returned the call after the voicemail"),
        )

    return CallbackDispatcher(pool, deliver)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    """Connect to Temporal and PostgreSQL, then run the worker until the block exits."""
    client = await connect(settings, service_runtime(settings.metrics_port))
    pool = await open_pool(database_url(settings))
    phone, messages = channels_from_settings(settings, SimulatedPhone(pool), DeliveryLedger(pool))
    worker = new_worker(
        client,
        pool,
        task_queue=settings.task_queue,
        sender=Sender(settings.sender_name, settings.callback_number),
        phone=phone,
        messages=messages,
    )
    dispatcher = asyncio.create_task(callback_dispatcher(client, pool).run())
    try:
        async with worker:
            log.info("worker_started", task_queue=settings.task_queue,
                     temporal=settings.temporal_address, metrics_port=settings.metrics_port)
            yield worker
    finally:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher
        await pool.close()


async def main() -> None:
    """Run the worker until interrupted."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    async with running_worker(settings):
        await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
