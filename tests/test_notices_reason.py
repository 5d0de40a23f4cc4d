"""Notices that track their reason, on the time-skipping server and real PostgreSQL.

Issue 25, item 4 ("a late arrival or a call-back resolves the session's notices and tells
those already paged"). A high-risk client without consent misses the session: the no-show
alert and the "escalation blocked" task go to the therapist, and five minutes later to the
on-call clinician. Then the client checks in late, calls back, or the therapist marks them
safe: both notices are resolved with that reason, the climb stops before the supervisor,
and each clinician already told gets one "RESOLVED" text per notice. The alert's words
follow what outreach does (deferred to the morning; the emergency contact called now), and
the therapist hears of every emergency call with what came of it. The decisions are
property-tested in `tests/test_notice_reasons.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer

from activities.notices import NoticeActivities, ResolutionDelivery, notice_workflow_id
from activities.outreach import Sender
from missed_session.application import Application, ResultKind
from missed_session.application import notices as use
from missed_session.application.results import Result
from missed_session.audit.export import fhir_bundle, validate
from missed_session.audit.replay import replay_failure
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.config import Settings
from missed_session.domain import events
from missed_session.domain.models import (
    CheckIn,
    ClientResponse,
    ClinicianDecision,
    DecisionKind,
    NoticeKind,
    Outcome,
    Priority,
    ResponseChannel,
    SessionBooking,
    TherapistNotice,
)
from missed_session.domain.notices import Acknowledgment, AckVia, EndReason, Resolution
from missed_session.domain.roster import NoticeRoute
from missed_session.domain.roster_file import parse_roster
from missed_session.store.audit import AuditStore
from missed_session.store.notices import NoticeStore, RosterStore, notice_trails
from missed_session.temporal import search_attributes as attrs
from tests.support.factories import booking, booking_data, daytime, without_consent
from tests.support.notices import ANA, LEE, MAYA, ROSTER, about, sleep_until, texts_to
from tests.support.servers import TEST_CONVERTER, TEST_KEYS, start_test_server
from worker import WORKFLOW_RUNNER, new_worker
from workflows.notice import NoticeView, NoticeWorkflow
from workflows.session import SessionWorkflow

CONTACT = "+14155550999"
"""The emergency contact's number in `booking_data`."""
Act = Callable[[Application, str], Awaitable[Result]]


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test, not per module.

    Under a loaded machine a test here has left the shared server unable to skip time for
    the next one (every later sleep then timed out after 30 s, whatever it waited for); a
    server of its own costs about a second and keeps one test's leftovers out of the next.
    """
    env = await start_test_server()
    yield env
    await env.shutdown()


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[None]:
    """A worker, with the practice's roster loaded."""
    loaded = parse_roster(ROSTER, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")):
        yield


def application(client: Client, pool: asyncpg.Pool, task_queue: str) -> Application:
    return Application(Settings(task_queue=task_queue, encryption_keys=TEST_KEYS),
                       client=client, pool=pool)


async def notice_types(pool: asyncpg.Pool, session_id: str, key: str) -> list[str]:
    return [e.event_type.value for e in (await notice_trails(pool, session_id)).get(key, [])]


async def late_check_in(app: Application, session_id: str) -> Result:
    return await app.check_in(session_id, CheckIn())


async def call_back(app: Application, session_id: str) -> Result:
    return await app.respond(session_id, ClientResponse(channel=ResponseChannel.CALL,
                                                        responder="client"))


async def marked_safe(app: Application, session_id: str) -> Result:
    return await app.decide(session_id, DecisionKind.MARK_SAFE, ClinicianDecision(
        clinician_id="t-ana", reason="spoke with the client's GP"))


@pytest.mark.parametrize(("act", "reason", "outcome"), [
    (late_check_in, EndReason.CHECKED_IN_LATE, Outcome.ATTENDED_LATE),
    (call_back, EndReason.REACHED, Outcome.REACHED),
    (marked_safe, EndReason.MARKED_SAFE, Outcome.MARKED_SAFE),
], ids=["late-check-in", "call-back", "marked-safe"])
async def test_the_end_of_the_reason_resolves_the_notices_and_tells_those_already_paged(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: None, act: Act, reason: EndReason, outcome: Outcome,
) -> None:
    env = time_skipping_env
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session: SessionBooking = booking(**without_consent(booking_data(
        risk_tier="high", start=start.isoformat())))
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    no_show = start + timedelta(minutes=10)
    alert, task = f"{session.session_id}/no-show-alert", f"{session.session_id}/escalation-blocked"

    # Nobody acknowledged: the on-call clinician has both, five minutes after the therapist.
    await sleep_until(env, no_show + timedelta(minutes=5, seconds=30))
    assert len(about(await texts_to(pool, LEE), "No-show")) == 1
    assert len(about(await texts_to(pool, LEE), "escalation blocked")) == 1

    async with application(client, pool, task_queue) as app:
        done = await act(app, session.session_id)
    assert done.kind is ResultKind.APPLIED, done.message
    assert "acknowledged" not in done.message  # the reason resolves them, for everyone
    assert (await handle.result()).outcome is outcome
    for key in (alert, task):
        view = await client.get_workflow_handle(notice_workflow_id(key),
                                                result_type=NoticeView).result()
        assert view.state == "resolved"
        assert view.reason_ended == reason.value
        assert view.resolved_by is None

    # One short message per person per notice, on the route the ladder used first (the
    # therapist's text, not her email), naming the reason; nothing to acknowledge.
    for number in (ANA, LEE):
        resolved = about(await texts_to(pool, number), "RESOLVED")
        assert len(resolved) == 2, resolved
        assert all(f"{reason.value}. No need to acknowledge." in body for body in resolved)
        assert all(session.client.ref in body and len(body) <= 160 for body in resolved)
        assert all("ACK" not in body for body in resolved)
    assert about(await texts_to(pool, ANA, kind="email"), "RESOLVED") == []
    for body in about(await texts_to(pool, ANA), "RESOLVED"):
        for personal in filter(None, (session.client.first_name, session.client.phone, CONTACT)):
            assert personal not in body

    # The climb stopped before the supervisor (both notice workflows have closed).
    assert await texts_to(pool, MAYA) == []
    store = NoticeStore(pool)
    for key in (alert, task):
        row = await store.get(key)
        assert row is not None
        assert (row.state, row.acknowledged_by, row.resolved_by) == ("resolved", None, None)
        types = await notice_types(pool, session.session_id, key)
        assert types[-3:] == ["notice_reason_ended", "notice_resolution_sent",
                              "notice_resolution_sent"]
        assert "notice_acknowledged" not in types
        trail = [events.read(e) for e in (await notice_trails(pool, session.session_id))[key]]
        ended = trail[-3]
        assert isinstance(ended, events.NoticeReasonEnded)
        assert (ended.reason, ended.told) == (reason.value, "t-ana,oc-lee")
        assert [(d.clinician_id, d.channel, d.result) for d in trail[-2:]  # type: ignore[attr-defined]
                ] == [("t-ana", "sms", "sent"), ("oc-lee", "sms", "sent")]
    bundle = fhir_bundle(session.session_id, await AuditStore(pool).trail(session.session_id),
                         await notice_trails(pool, session.session_id))
    tasks = {r["identifier"][0]["value"]: r for r in (e["resource"] for e in bundle["entry"])
             if r["resourceType"] == "Task" and "identifier" in r}
    assert tasks[alert]["status"] == tasks[task]["status"] == "completed"
    assert tasks[alert]["output"][0]["valueString"] == reason.value
    validate(bundle)
    described = await client.get_workflow_handle(notice_workflow_id(alert)).describe()
    assert described.typed_search_attributes.get(attrs.NOTICE_STATE) == "resolved"

    # Today's code replays what it recorded: the session's signals, the notices' resolution.
    replayer = Replayer(workflows=[SessionWorkflow, NoticeWorkflow],
                        data_converter=TEST_CONVERTER, workflow_runner=WORKFLOW_RUNNER)
    for workflow_id in (session.workflow_id, notice_workflow_id(alert),
                        notice_workflow_id(task)):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        assert await replay_failure(replayer, history) is None, workflow_id


async def test_a_notice_a_person_acknowledged_is_not_resolved_by_the_reason(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: None,
) -> None:
    env = time_skipping_env
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session = booking(**without_consent(booking_data(risk_tier="high",
                                                     start=start.isoformat())))
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    task = f"{session.session_id}/escalation-blocked"
    await sleep_until(env, start + timedelta(minutes=11))
    acked = await use.acknowledge(client, pool, task,
                                  Acknowledgment(via=AckVia.CLI, clinician_id="t-ana"))
    assert acked.kind is ResultKind.APPLIED, acked.message
    async with application(client, pool, task_queue) as app:
        assert (await late_check_in(app, session.session_id)).kind is ResultKind.APPLIED
    assert (await handle.result()).outcome is Outcome.ATTENDED_LATE
    alert = await client.get_workflow_handle(
        notice_workflow_id(f"{session.session_id}/no-show-alert"), result_type=NoticeView).result()
    assert alert.reason_ended == EndReason.CHECKED_IN_LATE.value
    row = await NoticeStore(pool).get(task)
    assert row is not None
    assert (row.state, row.acknowledged_by) == ("acknowledged", "t-ana")  # hers stands
    assert "notice_reason_ended" not in await notice_types(pool, session.session_id, task)
    assert len(about(await texts_to(pool, ANA), "RESOLVED")) == 1  # the alert's only
    await use.resolve(client, pool, task, Resolution(clinician_id="t-ana", outcome="done"))


async def test_a_closed_notice_is_passed_over_and_the_session_closes(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: None,
) -> None:
    # The therapist acknowledged the alert (its workflow closed): the session's signal to it
    # fails, is passed over, and the session and the still-open task go on.
    env = time_skipping_env
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session = booking(**without_consent(booking_data(risk_tier="high",
                                                     start=start.isoformat())))
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    alert, task = f"{session.session_id}/no-show-alert", f"{session.session_id}/escalation-blocked"
    await sleep_until(env, start + timedelta(minutes=11))
    acked = await use.acknowledge(client, pool, alert,
                                  Acknowledgment(via=AckVia.CLI, clinician_id="t-ana"))
    assert acked.kind is ResultKind.APPLIED, acked.message
    await client.get_workflow_handle(notice_workflow_id(alert)).result()
    async with application(client, pool, task_queue) as app:
        assert (await call_back(app, session.session_id)).kind is ResultKind.APPLIED
    assert (await handle.result()).outcome is Outcome.REACHED
    view = await client.get_workflow_handle(notice_workflow_id(task),
                                            result_type=NoticeView).result()
    assert view.reason_ended == EndReason.REACHED.value
    row = await NoticeStore(pool).get(alert)
    assert row is not None
    assert (row.state, row.acknowledged_by) == ("acknowledged", "t-ana")
    resolved = about(await texts_to(pool, ANA), "RESOLVED")
    assert len(resolved) == 1  # the task's
    assert "escalation blocked" in resolved[0]


async def test_the_alert_says_outreach_waits_for_the_morning(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: None,
) -> None:
    env = time_skipping_env
    start = daytime(await env.get_current_time(), hour=21).replace(microsecond=0)
    session = booking(**booking_data(start=start.isoformat()))
    await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                task_queue=task_queue)
    await sleep_until(env, start + timedelta(minutes=16))
    alert = about(await texts_to(pool, ANA), "No-show")
    assert len(alert) == 1
    assert "No-show: outreach deferred until 08:00 America/Los_Angeles" in alert[0]
    assert "has started" not in alert[0]
    assert "emergency contact" not in alert[0]
    await end_all(client, session)


@pytest.mark.parametrize(("behaviour", "result"), [
    (Behaviour.ANSWERS, "answered"), (Behaviour.RINGS_OUT, "no answer"),
])
async def test_the_therapist_is_told_when_the_emergency_contact_is_called_and_what_came_of_it(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, worker: None, behaviour: Behaviour, result: str,
) -> None:
    # High risk, consent on file, a protocol that does not wait overnight to escalate:
    # at a late-evening no-show the alert says the emergency contact is called now.
    env = time_skipping_env
    await SimulatedPhone(pool).script(CONTACT, behaviour)
    start = daytime(await env.get_current_time(), hour=21).replace(microsecond=0)
    session = booking(**booking_data(
        risk_tier="high", start=start.isoformat(),
        protocol={"high_risk_escalation_outside_window": True}))
    await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                task_queue=task_queue)
    await sleep_until(env, start + timedelta(minutes=11))
    ana = await texts_to(pool, ANA)
    emails = await texts_to(pool, ANA, kind="email")
    assert len(about(ana, "No-show")) == 1
    assert ("No-show: outreach deferred until 08:00 America/Los_Angeles; calling the "
            "emergency contact now") in about(emails, "No-show")[0]
    called = about(ana, "The emergency contact was called")
    assert len(called) == 1, ana
    assert f"The emergency contact was called: {result}" in called[0]
    for personal in filter(None, (session.client.first_name, session.client.phone, CONTACT, "Sam")):
        assert personal not in called[0]
    key = f"{session.session_id}/emergency-contact-called"
    row = await NoticeStore(pool).get(key)
    assert row is not None
    assert (row.kind, row.priority) == ("alert", "urgent")
    inbox = await pool.fetchval("SELECT title FROM therapist_inbox WHERE key = $1", key)
    assert inbox == f"The emergency contact was called: {result} (client {session.client.ref})"
    await end_all(client, session)


async def end_all(client: Client, session: SessionBooking) -> None:
    """Terminate what a test leaves running (its timers would hold the shared server's clock
    for a worker that is gone)."""
    ids = [session.workflow_id, *(notice_workflow_id(f"{session.session_id}/{name}") for name in
                                  ("no-show-alert", "escalation-blocked",
                                   "emergency-contact-called"))]
    for workflow_id in ids:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id).terminate("the test is over")


async def test_a_retried_resolution_reaches_nobody_twice(pool: asyncpg.Pool) -> None:
    phone = SimulatedPhone(pool)
    loaded = parse_roster(ROSTER, "practice.toml")
    rosters = RosterStore(pool)
    await rosters.load(loaded.roster, loaded.notices, "practice.toml")
    activities = NoticeActivities(rosters, NoticeStore(pool), phone, phone)
    delivery = ResolutionDelivery(
        idempotency_key="notice-s-r/no-show-alert/resolved/oc-lee",
        notice=TherapistNotice(key="s-r/no-show-alert", session_id="s-r", therapist_id="t-ana",
                               kind=NoticeKind.ALERT, priority=Priority.ROUTINE,
                               title="No-show: outreach to the client has started (client c-1)"),
        clinician_id="oc-lee", channel=NoticeRoute.SMS, address=LEE, client_ref="c-1",
        reason=EndReason.REACHED)
    env = ActivityEnvironment()
    for _ in range(3):  # a retried activity, a retried workflow task, a restarted worker
        await env.run(activities.deliver_resolution, delivery)
    assert await texts_to(pool, LEE) == [
        "RESOLVED, client c-1: No-show: outreach to the client has started - the client was "
        "reached. No need to acknowledge."]
