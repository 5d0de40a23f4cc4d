"""Closed-loop notices on the time-skipping server: notify, climb, acknowledge, run out.

A high-risk client misses the session and has no consent on file: the no-show alert and the
urgent "escalation blocked" task each become a notice workflow. The therapist is notified at
the no-show; with nobody acknowledging, the on-call clinician after the policy's 5 minutes,
then the supervisor after 5 more. An SMS reply from the on-call clinician stops the task's
climb (its trail says who, when and how); the alert, unanswered, runs out of steps and is
visible by search attribute and metric.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.notices import NoticeLinks, NoticePlan, NoticeRequest, notice_workflow_id
from activities.outreach import Sender
from missed_session.application import Application, ResultKind
from missed_session.application import notices as use
from missed_session.application.inbound import TextKind, receive_text
from missed_session.audit.export import fhir_bundle, notice_keys
from missed_session.channels.base import DeliveryUncertainError
from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.config import Settings
from missed_session.domain import events
from missed_session.domain.models import (
    ClinicianDecision,
    DecisionKind,
    NoticeKind,
    Outcome,
    Priority,
    RiskTier,
    SessionBooking,
    SessionResult,
    TherapistNotice,
)
from missed_session.domain.notices import Acknowledgment, AckVia, Resolution
from missed_session.domain.roster_file import parse_roster
from missed_session.store.audit import AuditStore
from missed_session.store.notices import NoticeStore, RosterStore, notice_trails
from missed_session.temporal import search_attributes as attrs
from missed_session.temporal.client import service_runtime
from tests.support.end_to_end import free_port, scrape
from tests.support.factories import booking, booking_data, daytime, without_consent
from tests.support.notices import ANA, LEE, MAYA, ROSTER, about, sleep_until, texts_to
from tests.support.servers import TEST_CONVERTER, TEST_KEYS
from worker import new_worker
from workflows.session import SessionWorkflow

ACK = re.compile(r"ACK ([A-Z0-9]{6})")


def samples(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$",
                                                      text, re.M))


@pytest.fixture
async def metrics_port(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                       task_queue: str) -> AsyncIterator[int]:
    """A worker whose runtime serves Prometheus metrics on a free port."""
    port = free_port()
    client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host,
        data_converter=TEST_CONVERTER, runtime=service_runtime(port),
    )
    loaded = parse_roster(ROSTER, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")):
        yield port


async def trail_types(pool: asyncpg.Pool, session_id: str, key: str) -> list[str]:
    trail = (await notice_trails(pool, session_id)).get(key, [])
    assert [e.sequence for e in trail] == list(range(1, len(trail) + 1))
    return [e.event_type.value for e in trail]


async def test_high_risk_blocked_escalation_climbs_until_an_sms_acknowledges_it(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, metrics_port: int,
) -> None:
    env = time_skipping_env
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session: SessionBooking = booking(**without_consent(booking_data(
        risk_tier="high", start=start.isoformat())))
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    no_show = start + timedelta(minutes=10)
    alert, task = f"{session.session_id}/no-show-alert", f"{session.session_id}/escalation-blocked"

    # At the no-show: the therapist, and only the therapist, has both.
    await sleep_until(env, no_show + timedelta(seconds=30))
    ana = await texts_to(pool, ANA)
    assert len(about(ana, "No-show")) == 1
    assert len(about(ana, "escalation blocked")) == 1
    assert session.client.phone is not None
    assert session.client.phone not in "".join(ana)
    assert session.client.first_name not in "".join(ana)  # the default rules: ref only
    assert session.client.ref in ana[0]
    assert max(len(body) for body in ana) <= 160
    assert await texts_to(pool, LEE) == []
    described = await client.get_workflow_handle(notice_workflow_id(task)).describe()
    assert described.typed_search_attributes.get(attrs.NOTICE_STATE) == "open"
    assert described.typed_search_attributes.get(attrs.NOTICE_TARGET) == "therapist"

    # Five minutes without acknowledgment: the on-call clinician.
    await sleep_until(env, no_show + timedelta(minutes=5, seconds=30))
    lee = await texts_to(pool, LEE)
    assert len(about(lee, "escalation blocked")) == 1
    assert await texts_to(pool, MAYA) == []
    match = ACK.search(about(lee, "escalation blocked")[0])
    assert match is not None
    code = match.group(1)

    # Refused: from a number that is not the notified clinician's; a code never sent.
    stranger = await use.sms_reply(client, pool, "+14155550777", f"ACK {code}")
    assert stranger.kind is ResultKind.REFUSED
    wrong = await use.sms_reply(client, pool, ANA, f"ACK {code}")
    assert (wrong.kind, wrong.message) == (ResultKind.REFUSED,
                                           "acknowledge refused: the code was not sent to t-ana")
    unknown = await use.sms_reply(client, pool, LEE, "ACK ZZZZZZ")
    assert (unknown.kind, unknown.message) == (ResultKind.REFUSED, "unknown code")
    assert "notice_acknowledged" not in await trail_types(pool, session.session_id, task)

    # The on-call clinician replies, through the inbound texts' path (the HTTP routes for
    # Twilio and the signed webhook call it): the climb stops.
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    async with Application(settings, client=client, pool=pool) as application:
        inbound = await receive_text(application, phone=LEE, body=f"ack {code.lower()}",
                                     message_id="SM-ack-1")
    assert inbound.kind is TextKind.ACKNOWLEDGMENT
    assert inbound.result.kind is ResultKind.APPLIED, inbound.result.message
    again = await use.sms_reply(client, pool, LEE, f"ACK {code}")
    assert again.message == "acknowledge refused: the notice was already acknowledged by oc-lee"
    refusals = await NoticeStore(pool).refusals()
    assert [r["reason"] for r in refusals] == [
        "the reply did not come from the notified clinician's number",
        "acknowledge refused: the code was not sent to t-ana",
        "unknown code",
        "acknowledge refused: the notice was already acknowledged by oc-lee",
    ]

    # Five more minutes: the supervisor hears of the alert, not of the acknowledged task.
    await sleep_until(env, no_show + timedelta(minutes=10, seconds=30))
    maya = await texts_to(pool, MAYA)
    assert len(about(maya, "No-show")) == 1
    assert about(maya, "escalation blocked") == []

    # Ten more: the alert ran out of steps, visibly.
    await sleep_until(env, no_show + timedelta(minutes=20, seconds=30))
    exhausted = await client.get_workflow_handle(notice_workflow_id(alert)).describe()
    assert exhausted.typed_search_attributes.get(attrs.NOTICE_STATE) == "exhausted"
    assert exhausted.typed_search_attributes.get(attrs.NOTICE_PRIORITY) == "urgent"
    metrics = await scrape(metrics_port)
    assert samples(metrics, "missed_session_notices_exhausted") == 1
    assert samples(metrics, "missed_session_notice_acknowledgment_delay_count") == 1
    assert (await NoticeStore(pool).get(alert)).state == "exhausted"  # type: ignore[union-attr]

    # The task's trail: who was notified, the climb, who acknowledged, how, and when.
    assert await trail_types(pool, session.session_id, task) == [
        "notice_opened", "notice_sent", "notice_sent", "notice_climbed", "notice_sent",
        "notice_acknowledged",
    ]
    trail = (await notice_trails(pool, session.session_id))[task]
    acknowledged = events.read(trail[-1])
    assert isinstance(acknowledged, events.NoticeAcknowledged)
    assert (acknowledged.clinician_id, acknowledged.via, acknowledged.step) == ("oc-lee", "sms", 2)
    assert 300 <= acknowledged.seconds_to_acknowledge < 330
    sent = [events.read(e) for e in trail if e.event_type.value == "notice_sent"]
    assert [(s.clinician_id, s.channel) for s in sent  # type: ignore[attr-defined]
            ] == [("t-ana", "sms"), ("t-ana", "email"), ("oc-lee", "sms")]
    assert await trail_types(pool, session.session_id, alert) == [
        "notice_opened", "notice_sent", "notice_sent", "notice_climbed", "notice_sent",
        "notice_climbed", "notice_sent", "notice_exhausted",
    ]

    # Resolving the task and acknowledging the run-out alert close both notices.
    resolved = await use.resolve(client, pool, task, Resolution(
        clinician_id="oc-lee", outcome="plan agreed with the therapist"))
    assert resolved.kind is ResultKind.APPLIED
    late = await use.acknowledge(client, pool, alert,
                                 Acknowledgment(via=AckVia.CLI, clinician_id="s-maya"))
    assert late.kind is ResultKind.APPLIED, late.message
    for key in (alert, task):
        await client.get_workflow_handle(notice_workflow_id(key)).result()
    assert (await NoticeStore(pool).get(task)).state == "resolved"  # type: ignore[union-attr]

    result: SessionResult = await handle.result()
    assert result.outcome.value == "unreachable_escalation_blocked"

    # The FHIR export: each notice a Task with the right status, its messages Communications.
    session_trail = await AuditStore(pool).trail(session.session_id)
    assert notice_keys(session_trail) == [alert, task]
    bundle = fhir_bundle(session.session_id, session_trail,
                         await notice_trails(pool, session.session_id))
    resources = [entry["resource"] for entry in bundle["entry"]]
    tasks = {r["identifier"][0]["value"]: r for r in resources
             if r["resourceType"] == "Task" and "identifier" in r}
    assert tasks[task]["status"] == "completed"
    assert tasks[task]["output"][0]["valueString"] == "plan agreed with the therapist"
    assert tasks[alert]["status"] == "accepted"
    assert "ran out of escalation steps" in tasks[alert]["businessStatus"]["text"]
    sent = [r for r in resources if r["resourceType"] == "Communication"
            and r.get("basedOn") and r["status"] == "completed" and "recipient" in r]
    assert len(sent) == 3 + 4  # task: ana sms+email, lee; alert: ana sms+email, lee, maya
    text = json.dumps(bundle)
    assert session.client.phone is not None
    for personal in (session.client.first_name, session.client.phone, ANA, LEE):
        assert personal not in text


async def test_a_signed_link_acknowledges_and_a_tampered_one_is_refused(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    env = time_skipping_env
    loaded = parse_roster(ROSTER, "practice.toml")
    await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    secret = b"link-secret-for-tests"
    links = NoticeLinks("https://notices.example.org/ack", secret)
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session = booking(**without_consent(booking_data(risk_tier="high",
                                                     start=start.isoformat())))
    alert, task = f"{session.session_id}/no-show-alert", f"{session.session_id}/escalation-blocked"
    sender = Sender("Alex", "+15555550100")
    async with new_worker(client, pool, task_queue=task_queue, sender=sender,
                          notice_links=links):
        handle = await client.start_workflow(SessionWorkflow.run, session,
                                             id=session.workflow_id, task_queue=task_queue)
        await env.sleep(start + timedelta(minutes=10, seconds=30) - await env.get_current_time())

        def link_in(body: str) -> dict[str, str]:
            found = re.search(r"Or open (\S+)$", body)
            assert found is not None, body
            url = urllib.parse.urlsplit(found.group(1))
            assert f"{url.scheme}://{url.netloc}{url.path}" == "https://notices.example.org/ack"
            return dict(urllib.parse.parse_qsl(url.query))

        ana = await texts_to(pool, ANA, kind="email")
        alert_link, task_link = link_in(about(ana, "No-show")[0]), link_in(
            about(ana, "escalation blocked")[0])
        assert not [body for body in await texts_to(pool, ANA) if "https://" in body]
        assert (alert_link["notice"], alert_link["clinician"]) == (alert, "t-ana")
        now = await env.get_current_time()

        async def follow(params: dict[str, str]) -> use.NoticeResult:
            return await use.follow_link(
                client, pool, secret, notice_key=params["notice"],
                clinician_id=params["clinician"], expires=int(params["expires"]),
                signature=params["signature"], now=now)

        tampered = await follow({**task_link, "clinician": "oc-lee"})
        assert (tampered.kind, tampered.message) == (ResultKind.REFUSED,
                                                     "the link's signature does not match")
        followed = await follow(alert_link)
        assert followed.kind is ResultKind.APPLIED, followed.message
        assert (await NoticeStore(pool).get(alert)).acknowledged_via == "link"  # type: ignore[union-attr]
        assert [r["reason"] for r in await NoticeStore(pool).refusals(task)] == [
            "the link's signature does not match"]
        assert "notice_acknowledged" not in await trail_types(pool, session.session_id, task)
        await use.resolve(client, pool, task, Resolution(clinician_id="t-ana",
                                                         outcome="client reached"))
        for key in (alert, task):
            await client.get_workflow_handle(notice_workflow_id(key)).result()
        await handle.result()


GAPPY = f"""
[roster]
time_zone = "America/Los_Angeles"
accept_coverage_gaps = true

[roster.clinicians.t-ana]
role = "therapist"
sms = "{ANA}"
email = "ana@clinic.example"

[roster.clinicians.s-maya]
role = "clinical_supervisor"
sms = "{MAYA}"

[[notices.policies]]
name = "twice"
steps = [{{ notify = "therapist", minutes = 5 }}, {{ notify = "on_call", minutes = 5 }}]
then = "repeat"
repeats = 1
"""


async def test_a_failed_channel_and_an_empty_rung_are_audited_and_the_ladder_repeats(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    loaded = parse_roster(GAPPY, "practice.toml")
    assert loaded.warnings  # nobody is ever on call: accepted, with a warning
    version = await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    await SimulatedPhone(pool).script(ANA, Behaviour.INVALID_NUMBER)
    notice = TherapistNotice(key="s-direct/no-show-alert", session_id="s-direct",
                             therapist_id="t-ana", kind=NoticeKind.ALERT,
                             priority=Priority.ROUTINE, title="No-show (client c-1)")
    request = NoticeRequest(
        notice=notice, risk_tier=RiskTier.STANDARD, client_ref="c-1", client_first_name="Robin",
        plan=NoticePlan(policy=loaded.notices.policies[0], include_first_name=False,
                        ack_code_hours=24, roster_version=version))
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")):
        handle = await client.start_workflow(
            "NoticeWorkflow", request, id=notice_workflow_id(notice.key), task_queue=task_queue,
            search_attributes=attrs.notice_initial(
                priority="routine", opened=await time_skipping_env.get_current_time()))
        await time_skipping_env.sleep(timedelta(minutes=11))
        described = await handle.describe()
        assert described.typed_search_attributes.get(attrs.NOTICE_STATE) == "exhausted"
        acked = await use.acknowledge(client, pool, notice.key,
                                      Acknowledgment(via=AckVia.CLI, clinician_id="t-ana"))
        assert acked.kind is ResultKind.APPLIED, acked.message
        await handle.result()
    trail = [events.read(e) for e in (await notice_trails(pool, "s-direct"))[notice.key]]
    assert [type(d).__name__ for d in trail] == [
        "NoticeOpened",
        "NoticeFailed", "NoticeSent", "NoticeClimbed", "NoticeSkipped",
        "NoticeClimbed", "NoticeFailed", "NoticeSent", "NoticeClimbed", "NoticeSkipped",
        "NoticeExhausted", "NoticeAcknowledged",
    ]
    failed, skipped = trail[1], trail[4]
    assert isinstance(failed, events.NoticeFailed)
    assert (failed.channel, failed.reason) == ("sms", "invalid contact")
    assert isinstance(skipped, events.NoticeSkipped)
    assert skipped.reason == "nobody is on call"
    exhausted = trail[-2]
    assert isinstance(exhausted, events.NoticeExhausted)
    assert (exhausted.rounds, exhausted.notified) == (2, "t-ana")


async def direct_notice(pool: asyncpg.Pool, key: str, kind: NoticeKind, priority: Priority,
                        risk_tier: RiskTier) -> NoticeRequest:
    """A notice started by itself (not by a session), on ROSTER and its matching policy."""
    loaded = parse_roster(ROSTER, "practice.toml")
    version = await RosterStore(pool).load(loaded.roster, loaded.notices, "practice.toml")
    session_id = key.split("/", maxsplit=1)[0]
    notice = TherapistNotice(key=key, session_id=session_id, therapist_id="t-ana", kind=kind,
                             priority=priority, title="Escalation blocked (client c-1)")
    return NoticeRequest(
        notice=notice, risk_tier=risk_tier, client_ref="c-1", client_first_name="Robin",
        plan=NoticePlan(policy=loaded.notices.policy_for(priority, risk_tier),
                        include_first_name=False, ack_code_hours=24, roster_version=version))


class _LostAnswers:
    """Texts to `uncertain` numbers reach the provider, whose answer is lost (a timeout after
    sending): the send may have been delivered. Everything else goes to the simulated phone.
    """

    def __init__(self, phone: SimulatedPhone, uncertain: set[str]) -> None:
        self._phone = phone
        self._uncertain = uncertain
        self.tries: list[str] = []

    async def send_text(self, key: str, session_id: str, to: str, text: str) -> None:
        if to in self._uncertain:
            self.tries.append(key)
            msg = "the provider's answer was lost after the request was sent"
            raise DeliveryUncertainError(msg)
        await self._phone.send_text(key, session_id, to, text)

    async def send_email(self, key: str, session_id: str, to: str, subject: str,
                         body: str) -> None:
        await self._phone.send_email(key, session_id, to, subject, body)


async def test_a_send_that_may_have_arrived_is_uncertain_and_the_rung_waits_its_minutes(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    request = await direct_notice(pool, "s-lost/escalation-blocked", NoticeKind.TASK,
                                  Priority.URGENT, RiskTier.HIGH)
    notice, policy = request.notice, request.plan.policy
    channel = _LostAnswers(SimulatedPhone(pool), {LEE})
    async with new_worker(client, pool, task_queue=task_queue, messages=channel,
                          sender=Sender("Alex", "+15555550100")):
        handle = await client.start_workflow(
            "NoticeWorkflow", request, id=notice_workflow_id(notice.key), task_queue=task_queue,
            search_attributes=attrs.notice_initial(
                priority="urgent", opened=await time_skipping_env.get_current_time()))
        await time_skipping_env.sleep(timedelta(minutes=12))
        acked = await use.acknowledge(client, pool, notice.key,
                                      Acknowledgment(via=AckVia.CLI, clinician_id="s-maya"))
        assert acked.kind is ResultKind.APPLIED, acked.message
        resolved = await use.resolve(client, pool, notice.key, Resolution(
            via=AckVia.CLI, clinician_id="s-maya", outcome="called the contact"))
        assert resolved.kind is ResultKind.APPLIED, resolved.message
        await handle.result()
    rows = (await notice_trails(pool, "s-lost"))[notice.key]
    trail = [(row.occurred_at, events.read(row)) for row in rows]
    uncertain = [(at, d) for at, d in trail if isinstance(d, events.NoticeUncertain)]
    assert len(uncertain) == 1
    at, details = uncertain[0]
    assert (details.step, details.clinician_id, details.channel) == (2, "oc-lee", "sms")
    assert details.reason == "delivery uncertain"
    assert not any(isinstance(d, events.NoticeFailed) for _, d in trail)
    assert len(channel.tries) == 1  # never sent again
    # The rung waits the policy's minutes, as after a send: it may have reached oc-lee.
    climbed = next(when for when, d in trail
                   if isinstance(d, events.NoticeClimbed) and d.step == 3)
    assert climbed - at >= timedelta(minutes=policy.steps[1].minutes)


async def test_a_notice_whose_trail_is_refused_fails_loudly_naming_the_event(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    # A closed trail already holds the notice's first place (a second writer under its
    # key): the shared trail refuses to write over it, and the notice fails with the reason.
    request = await direct_notice(pool, "s-held/no-show-alert", NoticeKind.ALERT,
                                  Priority.ROUTINE, RiskTier.STANDARD)
    notice = request.notice
    now = await time_skipping_env.get_current_time()
    held = events.new_event(session_id=notice.key, sequence=1, occurred_at=now,
                            details=events.Closed(outcome=Outcome.ATTENDED, attempts=0))
    assert (await AuditStore(pool).record([held])).new
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")):
        with pytest.raises(WorkflowFailureError) as failure:
            await client.execute_workflow(
                "NoticeWorkflow", request, id=notice_workflow_id(notice.key),
                task_queue=task_queue, search_attributes=attrs.notice_initial(
                    priority="routine", opened=now))
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "TrailRefused"
    assert "the audit trail refused event #1 (AuditConflict)" in str(cause)


async def test_a_decision_on_the_session_acknowledges_its_notices_sent_to_the_clinician(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool,
    task_queue: str, metrics_port: int,
) -> None:
    """Any entry point's decision (the application's `decide`) stops the climb, once."""
    env = time_skipping_env
    await SimulatedPhone(pool).script("+14155550999", Behaviour.ANSWERS)
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session: SessionBooking = booking(**without_consent(booking_data(
        risk_tier="high", start=start.isoformat())))
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    alert, task = f"{session.session_id}/no-show-alert", f"{session.session_id}/escalation-blocked"
    await sleep_until(env, start + timedelta(minutes=10, seconds=30))
    assert {(await NoticeStore(pool).get(key)).state  # type: ignore[union-attr]
            for key in (alert, task)} == {"open"}

    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    async with Application(settings, client=client, pool=pool) as application:
        decided = await application.decide(session.session_id, DecisionKind.ESCALATE_NOW,
                                           ClinicianDecision(
            clinician_id="t-ana", reason="high risk, unreachable",
            legal_basis="vital interests"))
        assert decided.kind is ResultKind.APPLIED, decided.message
        assert decided.message.endswith(f"acknowledged: {alert}, {task}")
        # Nothing left to acknowledge: a second decision acknowledges nothing twice.
        noted = await application.decide(session.session_id, DecisionKind.ADD_NOTE,
                                         ClinicianDecision(clinician_id="t-ana",
                                                           reason="called the GP too"))
        assert noted.kind is ResultKind.APPLIED, noted.message
        assert "acknowledged" not in noted.message

    for key in (alert, task):
        row = await NoticeStore(pool).get(key)
        assert row is not None
        assert (row.state, row.acknowledged_by, row.acknowledged_via) == (
            "acknowledged", "t-ana", "decision")
        assert (await trail_types(pool, session.session_id, key)).count(
            "notice_acknowledged") == 1
    await client.get_workflow_handle(notice_workflow_id(alert)).result()  # an alert closes
    assert await NoticeStore(pool).refusals() == []
    # The climb stopped: the on-call clinician never hears of either.
    await sleep_until(env, start + timedelta(minutes=20))
    assert await texts_to(pool, LEE) == []
    assert (await handle.result()).outcome is Outcome.UNREACHABLE_ESCALATED
