"""The worker: runs session workflows and their activities.

Activities are class instances that hold the database pool and the channel, built once here
so that every activity reuses one pool rather than connecting per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import CodeType, ModuleType
from typing import ClassVar

import asyncpg
import structlog
from temporalio import workflow
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import (
    Worker,
    WorkerDeploymentConfig,
    WorkflowInstance,
    WorkflowInstanceDetails,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit import AuditActivities
from activities.brake import BrakeActivities
from activities.caring import CaringActivities
from activities.follow_up import FollowUpActivities
from activities.letters import FOLDER_NAME as LETTERS
from activities.letters import LetterActivities
from activities.notices import NoticeActivities, NoticeLinks
from activities.outreach import (
    LadderActivities,
    OutreachActivities,
    Sender,
    TextPolicyActivities,
)
from activities.therapist import TherapistActivities
from missed_session.application.updates import send_update
from missed_session.audit.archive import HistoryArchiver
from missed_session.audit.integrity import IntegrityAlarm, StoppedSessions
from missed_session.channels.base import MessageProvider, PhoneProvider
from missed_session.channels.ledger import DeliveryLedger
from missed_session.channels.setup import channels_from_settings
from missed_session.channels.simulated import (
    CALLBACK_UPDATE_ID,
    CallbackDispatcher,
    SimulatedPhone,
)
from missed_session.config import (
    DEFAULT_MAX_CACHED_WORKFLOWS,
    DEFAULT_STICKY_SECONDS,
    Settings,
    load_settings,
)
from missed_session.domain.brake import BrakeSettings
from missed_session.domain.clients import ConsentDefaults
from missed_session.domain.models import ClientResponse, ResponseChannel, workflow_id_for
from missed_session.lifecycle import run_until_stopped, waiting_for
from missed_session.log_setup import configure_logging
from missed_session.metrics import ServiceMetrics
from missed_session.practice_file import load_brake_settings, load_consent_defaults
from missed_session.store import checkpoints
from missed_session.store.attendance import AttendanceStore
from missed_session.store.audit import AuditStore
from missed_session.store.clients import ClientDirectory
from missed_session.store.database import database_url, open_pool, owner_database_url
from missed_session.store.follow_up_plans import FollowUpPlanStore
from missed_session.store.inbox import InboxStore
from missed_session.store.notices import NoticeStore, RosterStore
from missed_session.temporal.client import connect, service_runtime
from missed_session.temporal.versioning import deployment_config
from workflows.caring import CaringContactsWorkflow
from workflows.notice import NoticeWorkflow
from workflows.session import SessionWorkflow

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE = timedelta(seconds=20)
"""How long a stopping worker lets activities in flight finish before cancelling them
(they are then retried elsewhere). Under the 30 s most supervisors wait before SIGKILL."""

OWED_CALLBACKS_POLL_SECONDS = 5.0
"""How often the worker's call-back dispatcher reads the call-backs PostgreSQL says are owed
(those of a dead worker; its own are scheduled in memory as the voicemail is left)."""

_CREATING = threading.local()
"""`instance` is true while this thread creates a workflow instance in our sandbox."""


class _CompiledOnceLoader(importlib.machinery.SourceFileLoader):
    """A source loader that compiles each module once per process and hands out that code.

    Code objects are immutable, so sandboxes can share them: each sandbox still executes
    the module afresh (its own globals, its own workflow class, its own restricted imports).
    """

    _compiled: ClassVar[dict[tuple[str, str], CodeType]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def get_code(self, fullname: str) -> CodeType | None:
        key = (fullname, self.path)
        with self._lock:
            code = self._compiled.get(key)
            if code is None:
                code = super().get_code(fullname)
                if code is not None:
                    self._compiled[key] = code
        return code


class _SandboxCodeSharing(importlib.abc.MetaPathFinder):
    """Finds modules the workflow sandbox re-imports and loads them with shared code.

    Only the imports a `CompiledOnceSandboxRunner` sandbox makes while it creates a workflow
    instance are touched (not those in `imports_passed_through()`); the spec is the one the
    other finders return, with a compile-once loader for plain source files.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not getattr(_CREATING, "instance", False) or not workflow.unsafe.in_sandbox():
            return None
        if workflow.unsafe.is_imports_passed_through():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            loader = spec.loader
            if type(loader) is importlib.machinery.SourceFileLoader:
                spec.loader = _CompiledOnceLoader(loader.name, loader.path)
            return spec
        return None


_CODE_SHARING = _SandboxCodeSharing()
_INSTALLING = threading.Lock()


@dataclass(frozen=True)
class CompiledOnceSandboxRunner(SandboxedWorkflowRunner):
    """Temporal's sandbox, with the workflow module compiled once instead of once per run.

    The sandbox re-imports a workflow's module (and any module not passed through) for every
    workflow it instantiates, so that runs share no module state and module-level names are
    the restricted ones. Python's import compiles the source again each time (or unmarshals
    the `.pyc`), and every cached workflow kept its own copy of the module's code objects:
    about 75 KB of the 200 KB a cached session cost with `workflows/session.py`, plus the
    compile on every instance. Here the import finds the code compiled by the first sandbox;
    everything else about the sandbox is unchanged. A side effect: a running worker keeps
    executing the workflow code it compiled first, even if the file changes on disk.
    """

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        """Install the code-sharing finder (once), then create the sandboxed instance."""
        if _CODE_SHARING not in sys.meta_path:
            with _INSTALLING:
                if _CODE_SHARING not in sys.meta_path:
                    sys.meta_path.insert(0, _CODE_SHARING)
        _CREATING.instance = True
        try:
            return super().create_instance(det)
        finally:
            _CREATING.instance = False


WORKFLOW_RUNNER = CompiledOnceSandboxRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "email_validator", "idna", "workflows.patches")
)
"""Pydantic imports the email validator lazily; passing it through keeps it out of replays.
`workflows.patches` holds constants and a class whose state lives in each instance: the
sandbox need not import it again for every session it creates."""


def new_worker(
    client: Client,
    pool: asyncpg.Pool,
    *,
    task_queue: str,
    sender: Sender,
    phone: PhoneProvider | None = None,
    messages: MessageProvider | None = None,
    max_cached_workflows: int = DEFAULT_MAX_CACHED_WORKFLOWS,
    sticky_seconds: float = DEFAULT_STICKY_SECONDS,
    graceful_shutdown_timeout: timedelta = timedelta(0),
    deployment: WorkerDeploymentConfig | None = None,
    notice_links: NoticeLinks | None = None,
    text_policy: TextPolicyActivities | None = None,
    consent_defaults: ConsentDefaults | None = None,
    brake: BrakeSettings | None = None,
    letters_folder: Path = Path(".data") / LETTERS,
) -> Worker:
    """A worker with the session and notice workflows and every activity they call.

    Without channels given, the simulated phone places calls and sends texts and email
    (to clients and to clinicians alike). `max_cached_workflows` is the sticky cache
    (`MSR_MAX_CACHED_WORKFLOWS`), `sticky_seconds` how long a cached session's next task
    waits for this worker (`MSR_STICKY_SECONDS`); `notice_links`: signed acknowledgment
    links in notices; `deployment`: the Worker Versioning version
    (missed_session/temporal/versioning.py), None when unversioned; `brake`: the practice
    file's mass no-show brake (None: off); `letters_folder`: where prepared letters are
    kept (owner-only).
    """
    inbox = InboxStore(pool)
    runtime = client.service_client.config.runtime or Runtime.default()
    ladders = LadderActivities(pool)
    simulated = SimulatedPhone(pool)
    notices = NoticeActivities(RosterStore(pool), NoticeStore(pool), phone or simulated,
                               messages or simulated, notice_links)
    audit = AuditActivities(AuditStore(pool), inbox, ServiceMetrics(runtime.metric_meter),
                            ladders, notices)
    outreach = OutreachActivities(phone or simulated, sender, messages or simulated,
                                  directory=ClientDirectory(pool),
                                  consent_defaults=consent_defaults, ladders=ladders)
    text_policy = text_policy or TextPolicyActivities(pool, ClientDirectory(pool))
    therapist = TherapistActivities(inbox)
    follow_up = FollowUpActivities(AttendanceStore(pool), FollowUpPlanStore(pool), inbox)
    caring = CaringActivities(messages or simulated, sender, pool,
                              consent_defaults=consent_defaults)
    brake_activities = BrakeActivities(pool, brake)
    letters = LetterActivities(letters_folder, sender, ClientDirectory(pool))
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SessionWorkflow, NoticeWorkflow, CaringContactsWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        max_cached_workflows=max_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=sticky_seconds),
        graceful_shutdown_timeout=graceful_shutdown_timeout,
        deployment_config=deployment,
        activities=[
            audit.record_event,
            audit.record_closing,
            audit.record_no_show,
            audit.document_no_show,
            outreach.call_client,
            outreach.leave_voicemail,
            outreach.send_text,
            outreach.send_email,
            text_policy.text_refusal,
            ladders.running_ladder,
            outreach.call_emergency_contact,
            therapist.notify_therapist,
            follow_up.create_follow_up_plan,
            notices.plan_notice,
            notices.notice_recipients,
            notices.deliver_notice,
            notices.deliver_resolution,
            notices.record_notice_state,
            caring.send_caring_contact,
            brake_activities.brake_check,
            letters.prepare_letter,
        ],
    )


def notice_links(settings: Settings) -> NoticeLinks | None:
    """Signed acknowledgment links, when the practice runs an endpoint for them."""
    if settings.notice_link_url is None or settings.notice_link_secret is None:
        return None
    return NoticeLinks(settings.notice_link_url,
                       settings.notice_link_secret.get_secret_value().encode())


def callback_dispatcher(client: Client, pool: asyncpg.Pool, *,
                        poll_seconds: float = 0.5) -> CallbackDispatcher:
    """Deliver the simulated phone's call-backs as `client_responded` updates.

    `poll_seconds`: how often it looks in PostgreSQL for call-backs owed by a dead worker.
    """

    async def deliver(session_id: str) -> bool:
        # Sent until the session has taken it (or refused it, or closed): an update only
        # admitted when the dev server restarted is sent again under the same id.
        sent = await send_update(
            client, workflow_id_for(session_id), "client_responded",
            ClientResponse(channel=ResponseChannel.CALL, responder="client",
                           note="returned the call after the voicemail"),
            update_id=CALLBACK_UPDATE_ID, wait=None)
        return sent.took_it

    return CallbackDispatcher(pool, deliver, poll_seconds=poll_seconds)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    """Connect to Temporal and PostgreSQL, then run the worker until the block exits.

    Either may still be coming up: start-up waits for each (see `lifecycle.waiting_for`).
    Leaving the block shuts the worker down gracefully: polling stops, activities in flight
    get `SHUTDOWN_GRACE` to finish, then are cancelled and retried by another worker.
    """
    runtime = service_runtime(settings.metrics_port, settings.metrics_host)
    client = await waiting_for("temporal", lambda: connect(settings, runtime))
    url, owner_url = database_url(settings), owner_database_url(settings)
    pool = await waiting_for("postgresql", lambda: open_pool(url, owner_url=owner_url))
    # The phone hands each call-back to the dispatcher as it leaves the voicemail; the
    # follower's poll only finds those owed by a worker that died (and a restarted worker
    # reads them at once): every few seconds is soon enough, and idle costs nothing.
    dispatcher = callback_dispatcher(client, pool, poll_seconds=OWED_CALLBACKS_POLL_SECONDS)
    phone, messages = channels_from_settings(
        settings, SimulatedPhone(pool, callbacks=dispatcher), DeliveryLedger(pool)
    )
    worker = new_worker(
        client,
        pool,
        task_queue=settings.task_queue,
        sender=Sender(settings.sender_name, settings.callback_number),
        phone=phone,
        messages=messages,
        max_cached_workflows=settings.max_cached_workflows,
        sticky_seconds=settings.sticky_seconds,
        graceful_shutdown_timeout=SHUTDOWN_GRACE,
        deployment=deployment_config(settings),
        notice_links=notice_links(settings),
        consent_defaults=load_consent_defaults(settings.practice_file),
        brake=load_brake_settings(settings.practice_file),
        letters_folder=settings.data_dir / LETTERS,
    )
    followers = [asyncio.create_task(dispatcher.run()),
                 *trail_followers(settings, client, pool)]
    try:
        async with worker:
            log.info("worker_started", task_queue=settings.task_queue,
                     temporal=settings.temporal_address, metrics_port=settings.metrics_port)
            yield worker
    finally:
        for follower in followers:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        await pool.close()
        log.info("worker_stopped", task_queue=settings.task_queue)


def trail_followers(settings: Settings, client: Client,
                    pool: asyncpg.Pool) -> list[asyncio.Task[None]]:
    """Followers: the history archiver, stopped sessions, signed checkpoints (docs/security.md)."""
    interval = timedelta(seconds=settings.checkpoint_interval_seconds)
    alarm = IntegrityAlarm(client, pool, task_queue=settings.task_queue)
    followers = [asyncio.create_task(HistoryArchiver(client, pool, interval=interval).run()),
                 asyncio.create_task(StoppedSessions(client, pool, alarm).run())]
    signer = checkpoints.signer_for(settings)
    if signer is None:
        log.warning("audit_checkpoints_off", reason="no checkpoint_keys configured")
        return followers
    checkpointer = checkpoints.Checkpointer(pool, signer, interval=interval,
                                            heads=checkpoints.head_sink_for(settings),
                                            alarm=alarm)
    return [*followers, asyncio.create_task(checkpointer.run())]


async def main() -> None:
    """Run the worker until SIGTERM or SIGINT (a clean stop: see `running_worker`)."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    async with running_worker(settings):
        await asyncio.Event().wait()


if __name__ == "__main__":
    raise SystemExit(run_until_stopped(main))
