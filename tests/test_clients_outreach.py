"""Consent and contact details as of the step: the directory reaches sessions already running.

Real worker, time-skipping Temporal server, embedded PostgreSQL. The bookings below carry
the old snapshot (consent given, the old number); the directory changes while the session
is in outreach, and the next step follows the directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.outreach import NO_CONSENT, OutreachActivities, Sender
from missed_session.channels.simulated import SimulatedPhone
from missed_session.domain.clients import (
    ClientRecord,
    ConsentEntry,
    ConsentRecord,
    ConsentSource,
    ConsentSubject,
    ContactUse,
    DirectoryContact,
    EmailPoint,
    PhonePoint,
    PostalAddress,
)
from missed_session.domain.events import (
    EscalationBlocked,
    OutreachAttempted,
    OutreachSkipped,
    VoicemailLeft,
    read,
)
from missed_session.domain.models import (
    ConsentScope,
    Outcome,
    OutreachRequest,
    SessionBooking,
    SessionResult,
    SessionStatus,
)
from missed_session.store.clients import ClientDirectory
from tests.support.session_workflow import (
    CLIENT_PHONE,
    CONTACT_PHONE,
    HIGH_RISK_GRACE,
    SENDER,
    begin,
    book,
    every,
    inbox,
    only,
    placed,
    run,
    sleep_until,
    trail,
    types,
)
from worker import new_worker
from workflows.session import SessionWorkflow

NEW_PHONE = "+14155550777"
EARLIER = datetime(2026, 1, 15, tzinfo=UTC)


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER) as running:
        yield running


def consent(ref: str | None, subject: ConsentSubject, point: str | None, *,
            granted: bool = True, source: ConsentSource = ConsentSource.INTAKE_FORM,
            scope: ConsentScope | None = None, at: datetime = EARLIER) -> ConsentEntry:
    return ConsentEntry(client_ref=ref, subject=subject, contact_point=point, granted=granted,
                        scope=scope, effective_at=at, source=source, recorded_by="t-ana")


async def enrol(pool: asyncpg.Pool, session: SessionBooking, *, phone: str = CLIENT_PHONE,
                texts: bool = False) -> dict[ConsentSubject, ConsentRecord]:
    """The booking's client in the directory, consenting to call, voicemail (texts) and
    their emergency contact; the records by subject."""
    ref = session.client.ref
    record = ClientRecord(ref=ref, first_name="Robin", time_zone=session.client.time_zone,
                          phones=(PhonePoint(number=phone),),
                          emergency_contacts=(DirectoryContact(name="Sam", phone=CONTACT_PHONE),))
    entries = [consent(ref, ConsentSubject.CALL, None),
               consent(ref, ConsentSubject.VOICEMAIL, None),
               consent(ref, ConsentSubject.EMERGENCY_CONTACT, CONTACT_PHONE,
                       scope=ConsentScope.UNREACHABLE)]
    if texts:
        entries.append(consent(ref, ConsentSubject.TEXT, phone))
    written = await ClientDirectory(pool).add(record, source="test", recorded_by="t-ana",
                                              consents=entries)
    return {r.subject: r for r in written}


async def in_outreach_after_attempt_one(env: WorkflowEnvironment, client: Client,
                                        task_queue: str, session: SessionBooking,
                                        ) -> WorkflowHandle[SessionWorkflow, SessionResult]:
    handle = await begin(client, task_queue, session)
    await sleep_until(env, session.start + HIGH_RISK_GRACE + timedelta(minutes=5))
    state = await handle.query(SessionWorkflow.state)
    assert (state.status, state.attempts_made) == (SessionStatus.OUTREACH, 1)
    return handle


@pytest.mark.usefixtures("worker")
async def test_withdrawing_emergency_contact_consent_during_outreach_blocks_escalation(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    # High risk, escalation after the second attempt: the withdrawal lands between them.
    session = await book(time_skipping_env, risk_tier="high",
                         protocol={"escalate_after": {"high": 2}})
    assert session.client.emergency_contact is not None
    assert session.client.emergency_contact.consent  # the booking's snapshot says yes
    await enrol(pool, session)
    handle = await in_outreach_after_attempt_one(time_skipping_env, client, task_queue, session)

    withdrawn = await ClientDirectory(pool).append_consent(consent(
        session.client.ref, ConsentSubject.EMERGENCY_CONTACT, CONTACT_PHONE, granted=False,
        source=ConsentSource.CLIENT_REQUEST, at=datetime.now(UTC)))
    result = await handle.result()

    assert result.outcome is Outcome.UNREACHABLE_ESCALATION_BLOCKED
    events = await trail(pool, session.session_id)
    blocked = read(only(events, "escalation_blocked"))
    assert isinstance(blocked, EscalationBlocked)
    assert withdrawn.record_id in blocked.reason
    assert "withdrawn" in blocked.reason
    assert "escalation_sent" not in types(events)
    assert blocked.task is not None
    task = (await inbox(pool, session.session_id))[blocked.task]
    assert (task["kind"], task["priority"]) == ("task", "urgent")
    assert f"emergency_contact consent withdrawn ({withdrawn.record_id}, client_request)" in (
        task["title"])
    assert "message" not in [kind for _, kind, _, _ in await placed(pool, session.session_id)]


@pytest.mark.usefixtures("worker")
async def test_a_phone_number_changed_mid_ladder_is_used_from_the_next_attempt(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    session = await book(time_skipping_env, risk_tier="high",
                         protocol={"escalate_after": {"high": 3}})
    records = await enrol(pool, session)
    handle = await in_outreach_after_attempt_one(time_skipping_env, client, task_queue, session)

    directory = ClientDirectory(pool)
    held = await directory.get(session.client.ref)
    assert held is not None
    changed, _ = await directory.put(
        held.model_copy(update={"phones": (PhonePoint(number=NEW_PHONE, verified=True),)}),
        source="client_request", recorded_by="t-ana")
    result = await handle.result()

    assert changed == ["phones"]
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    calls = [(key.split("/")[-2], to) for key, kind, to, _ in
             await placed(pool, session.session_id) if kind == "call"]
    assert calls == [("attempt-1", CLIENT_PHONE), ("attempt-2", NEW_PHONE),
                     ("attempt-3", NEW_PHONE)]
    # Every outreach step's audit event names the consent record it relied on.
    events = await trail(pool, session.session_id)
    attempted = [read(e) for e in every(events, "outreach_attempted")]
    left = [read(e) for e in every(events, "voicemail_left")]
    assert attempted
    assert left
    assert {a.consent_record for a in attempted if isinstance(a, OutreachAttempted)} == {
        records[ConsentSubject.CALL].record_id}
    assert {v.consent_record for v in left if isinstance(v, VoicemailLeft)} == {
        records[ConsentSubject.VOICEMAIL].record_id}
    sent = read(only(events, "escalation_sent"))
    assert getattr(sent, "consent_record", None) == (
        records[ConsentSubject.EMERGENCY_CONTACT].record_id)


@pytest.mark.usefixtures("worker")
async def test_a_stop_from_the_number_skips_the_text_naming_the_record(
    client: Client, pool: asyncpg.Pool, task_queue: str, time_skipping_env: WorkflowEnvironment,
) -> None:
    base = await book(time_skipping_env, protocol={"channels": ["call", "text"],
                                                   "max_attempts": 1})
    client_data = base.client.model_dump(mode="json")
    client_data["preferences"] = {"text": True}
    session = base.model_copy(update={"client": type(base.client).model_validate(client_data)})
    await enrol(pool, session, texts=True)
    stop = await ClientDirectory(pool).append_consent(consent(
        None, ConsentSubject.TEXT, CLIENT_PHONE, granted=False,
        source=ConsentSource.STOP_REPLY, at=datetime.now(UTC)))

    await run(client, task_queue, session)

    events = await trail(pool, session.session_id)
    skipped = read(only(events, "outreach_skipped"))
    assert isinstance(skipped, OutreachSkipped)
    assert skipped.consent_record == stop.record_id
    assert "text" not in [kind for _, kind, _, _ in await placed(pool, session.session_id)]


async def test_stop_stops_texts_to_every_client_using_the_number_and_start_restores_them(
    pool: asyncpg.Pool,
) -> None:
    directory = ClientDirectory(pool)
    refs = ["c-shared-1", "c-shared-2"]
    for ref in refs:
        await directory.add(
            ClientRecord(ref=ref, first_name="Robin", time_zone="America/Los_Angeles",
                         phones=(PhonePoint(number=CLIENT_PHONE),)),
            source="test", recorded_by="t-ana",
            consents=[consent(ref, ConsentSubject.TEXT, CLIENT_PHONE)])
    outreach = OutreachActivities(SimulatedPhone(pool), Sender("Alex", "+15555550100"),
                                  SimulatedPhone(pool), directory=directory)
    env = ActivityEnvironment()

    def request(ref: str, step: str) -> OutreachRequest:
        return OutreachRequest(idempotency_key=f"session-x-{ref}/{step}", session_id=f"x-{ref}",
                               client={"ref": ref, "first_name": "Robin", "phone": CLIENT_PHONE,
                                       "time_zone": "America/Los_Angeles"})

    stop = await directory.append_consent(consent(
        None, ConsentSubject.TEXT, CLIENT_PHONE, granted=False,
        source=ConsentSource.STOP_REPLY, at=datetime.now(UTC)))
    assert await directory.clients_using(CLIENT_PHONE) == refs
    for ref in refs:
        with pytest.raises(Exception) as refused:  # noqa: PT011 - ApplicationError, checked
            await env.run(outreach.send_text, request(ref, "after-stop"))
        assert getattr(refused.value, "type", None) == NO_CONSENT
        assert getattr(refused.value, "details", None) == (stop.record_id,)

    start = await directory.append_consent(consent(
        None, ConsentSubject.TEXT, CLIENT_PHONE, granted=True,
        source=ConsentSource.START_REPLY, at=datetime.now(UTC)))
    for ref in refs:
        outcome = await env.run(outreach.send_text, request(ref, "after-start"))
        assert outcome.consent_record == start.record_id
    sent = await pool.fetchval("SELECT count(*) FROM sim_phone_log WHERE kind = 'text'")
    assert sent == len(refs)


async def test_the_entry_and_its_consent_history_are_read_in_one_statement(
    pool: asyncpg.Pool, service_database_url: str,
) -> None:
    # What a step reads just before it reaches the client (issue 28 item 2): the same as
    # `get` and then `history`, in one round trip.
    ref = "c-one-read"
    directory = ClientDirectory(pool)
    await directory.add(
        ClientRecord(ref=ref, first_name="Robin", time_zone="America/Los_Angeles",
                     flags=("prefers-text",),
                     phones=(PhonePoint(number=CLIENT_PHONE),
                             PhonePoint(number=NEW_PHONE, use=ContactUse.WORK, verified=True)),
                     emails=(EmailPoint(address="robin@example.org"),),
                     emergency_contacts=(DirectoryContact(name="Sam", phone=CONTACT_PHONE),
                                         DirectoryContact(name="Kim", phone="+14155550998",
                                                          relationship="sister")),
                     postal_address=PostalAddress(recipient="Robin Doe", lines=("1 Main St",),
                                                  locality="Springfield", postal_code="12345")),
        source="test", recorded_by="t-ana",
        consents=[consent(ref, ConsentSubject.CALL, None),
                  consent(ref, ConsentSubject.EMERGENCY_CONTACT, CONTACT_PHONE,
                          scope=ConsentScope.UNREACHABLE)])
    await directory.add(ClientRecord(ref="c-other", first_name="Alex", time_zone="UTC"),
                        source="test", recorded_by="t-ana",
                        consents=[consent("c-other", ConsentSubject.CALL, None)])
    await directory.append_consent(consent(None, ConsentSubject.TEXT, NEW_PHONE, granted=False,
                                           source=ConsentSource.STOP_REPLY))
    await directory.append_consent(consent(None, ConsentSubject.TEXT, "+14155550000",
                                           granted=False, source=ConsentSource.STOP_REPLY))
    statements: list[str] = []
    counted = await asyncpg.create_pool(  # released without a reset, as the service's pool
        service_database_url, min_size=1, max_size=1, reset=_no_reset,
        init=lambda connection: _log_into(connection, statements))
    try:
        found = await ClientDirectory(counted).get_with_history(ref)
        assert len(statements) == 1, statements
        assert await ClientDirectory(counted).get_with_history("c-unknown") is None
    finally:
        await counted.close()

    expected = (await directory.get(ref), await directory.history(ref))
    assert found == expected
    assert [record.subject for record in found[1]] == [
        ConsentSubject.CALL, ConsentSubject.EMERGENCY_CONTACT, ConsentSubject.TEXT]


async def _log_into(connection: asyncpg.Connection, statements: list[str]) -> None:
    connection.add_query_logger(lambda query: statements.append(query.query))


async def _no_reset(connection: asyncpg.Connection) -> None:
    del connection
