"""The client directory through the application layer, on a real PostgreSQL.

Bad input is refused naming the field with nothing written; consent records are
append-only; the history answers "may we ... now?"; export gives the record, its changes
and the history (FHIR Consent too); a booking with only the client ref is completed from
the directory, an unknown ref refused naming it; audit purge leaves consent alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fhir.resources.R4B.consent import Consent
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.application import Application, ResultKind
from missed_session.application.clients import ClientUseCases
from missed_session.config import Settings
from missed_session.domain.clients import (
    ConsentDefaults,
    ConsentEntry,
    ConsentSource,
    ConsentSubject,
    decide,
)
from missed_session.domain.models import SessionBooking
from missed_session.domain.practice import PracticeFileError
from missed_session.practice_file import load_consent_defaults
from missed_session.store.audit import AuditStore
from missed_session.store.clients import ClientDirectory
from tests.support.factories import booking_data
from tests.support.servers import TEST_KEYS, start_test_server
from tests.support.starter import future_start
from worker import new_worker

REF = "c-dir-1"
PHONE = "+14155550123"
CONTACT = "+14155550999"


def client_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ref": REF, "first_name": "Robin", "time_zone": "America/Los_Angeles",
        "phones": [{"number": PHONE, "use": "mobile", "verified": True},
                   {"number": "+14155550124", "use": "work"}],
        "emails": [{"address": "robin@example.org"}],
        "emergency_contacts": [{"name": "Sam", "phone": CONTACT, "relationship": "partner"}],
        "flags": ["interpreter"],
        "postal_address": {"recipient": "Robin Vale", "lines": ["12 Elm Street"],
                           "locality": "Oakland", "region": "CA", "postal_code": "94607"},
    }
    data.update(overrides)
    return data


def consent_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "client_ref": REF, "subject": "text", "contact_point": PHONE, "granted": True,
        "effective_at": "2026-01-15T09:00:00+00:00", "source": "intake_form",
        "recorded_by": "t-ana",
    }
    data.update(overrides)
    return data


@pytest.fixture
def clients(pool: asyncpg.Pool) -> ClientUseCases:
    return ClientUseCases(pool)


async def row_counts(pool: asyncpg.Pool) -> tuple[int, ...]:
    return tuple([await pool.fetchval(f"SELECT count(*) FROM {table}") for table in (
        "clients", "client_contact_points", "client_emergency_contacts", "consent_records",
        "client_changes")])


@pytest.mark.parametrize(("client", "consent", "field"), [
    ({"phones": [{"number": "5557770199"}]}, None, "phones.0.number"),
    ({"emails": [{"address": "not-an-address"}]}, None, "emails.0.address"),
    ({"emergency_contacts": [{"name": "Me", "phone": PHONE}]}, None,
     "emergency_contacts.0.phone"),
    (None, {"effective_at": None}, "effective_at"),
    (None, {"source": None}, "source"),
    (None, {"contact_point": "+1 555 0123"}, "contact_point"),
])
async def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    clients: ClientUseCases, pool: asyncpg.Pool, client: dict[str, Any] | None,
    consent: dict[str, Any] | None, field: str,
) -> None:
    if consent is None:
        assert client is not None
        result = await clients.add(client_data(**client), recorded_by="t-ana")
    else:
        assert (await clients.add(client_data(), recorded_by="t-ana")).ok
        result = await clients.consent(consent_data(**consent))
    assert result.kind is ResultKind.BAD_INPUT
    assert result.message.startswith(field), result.message
    assert "5557770199" not in result.message
    assert "not-an-address" not in result.message
    expected = (0, 0, 0, 0, 0) if consent is None else (1, 3, 1, 0, 1)
    assert await row_counts(pool) == expected


async def test_an_update_or_consent_for_an_unknown_client_is_refused_naming_it(
    clients: ClientUseCases, pool: asyncpg.Pool,
) -> None:
    updated = await clients.update(client_data(), recorded_by="t-ana")
    consented = await clients.consent(consent_data())
    for result in (updated, consented):
        assert result.kind is ResultKind.NOT_FOUND
        assert result.message == f"client_ref: no client {REF!r} in the directory"
    assert await row_counts(pool) == (0, 0, 0, 0, 0)


async def test_consent_records_are_append_only(clients: ClientUseCases, pool: asyncpg.Pool,
                                               owner_database_url: str) -> None:
    assert (await clients.add(client_data(), recorded_by="t-ana")).ok
    assert (await clients.consent(consent_data())).ok
    owner = await asyncpg.connect(owner_database_url)
    try:
        for statement in ("UPDATE consent_records SET granted = false",
                          "DELETE FROM consent_records", "TRUNCATE consent_records"):
            # The service role lacks the privilege; even the owner meets the trigger.
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await pool.execute(statement)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(statement)
    finally:
        await owner.close()
    assert await pool.fetchval("SELECT count(*) FROM consent_records") == 1


async def test_withdrawal_is_a_new_record_and_the_answer_is_as_of_an_instant(
    clients: ClientUseCases, pool: asyncpg.Pool,
) -> None:
    assert (await clients.add(client_data(), recorded_by="t-ana")).ok
    given = await clients.consent(consent_data())
    withdrawn = await clients.consent(consent_data(
        granted=False, effective_at="2026-03-01T12:00:00+00:00", source="client_request"))
    assert given.ok
    assert withdrawn.ok
    history = await ClientDirectory(pool).history(REF)
    assert [r.granted for r in history] == [True, False]

    def may_text(at: datetime) -> tuple[bool, str | None]:
        answer = decide(history, client_ref=REF, subject=ConsentSubject.TEXT,
                        contact_point=PHONE, at=at, defaults=ConsentDefaults())
        return answer.allowed, answer.record_id

    assert may_text(datetime(2026, 1, 1, tzinfo=UTC)) == (False, None)  # no record: default
    assert may_text(datetime(2026, 2, 1, tzinfo=UTC)) == (True, history[0].record_id)
    assert may_text(datetime(2026, 3, 2, tzinfo=UTC)) == (False, history[1].record_id)


async def test_export_gives_the_record_changes_and_history_as_fhir_consent(
    clients: ClientUseCases,
) -> None:
    assert (await clients.add(client_data(), recorded_by="t-ana")).ok
    assert (await clients.update(client_data(first_name="Rob"), recorded_by="t-bo")).ok
    await clients.consent(consent_data())
    await clients.text_keyword(PHONE, opted_out=True)

    exported = await clients.export(REF)

    assert exported.data is not None
    assert exported.data["client"]["first_name"] == "Rob"
    changes = exported.data["changes"]
    assert [(c["action"], c["fields"], c["recorded_by"]) for c in changes] == [
        ("created", sorted(client_data()), "t-ana"), ("updated", ["first_name"], "t-bo")]
    history = exported.data["consent_history"]
    assert [(r["source"], r["granted"], r["client_ref"]) for r in history] == [
        ("intake_form", True, REF), ("stop_reply", False, None)]
    entries = exported.data["fhir_consent_bundle"]["entry"]
    resources = [Consent.model_validate(entry["resource"]) for entry in entries]
    assert [r.provision.type if r.provision else None for r in resources] == ["permit", "deny"]
    assert [r.id for r in resources] == [record["record_id"] for record in history]
    shown = await clients.show(REF)
    assert shown.data is not None
    assert shown.data["consent_now"]["text"].startswith("not allowed: text consent withdrawn")


async def test_audit_purge_leaves_consent_records(clients: ClientUseCases,
                                                  pool: asyncpg.Pool) -> None:
    assert (await clients.add(client_data(), recorded_by="t-ana")).ok
    await clients.consent(consent_data(effective_at="2019-01-01T00:00:00+00:00"))
    record = await AuditStore(pool).purge(cutoff=datetime(2020, 1, 1, tzinfo=UTC),
                                          retention_years=6, requested_by="test",
                                          max_sessions=10)
    assert record.sessions == 0
    assert await pool.fetchval("SELECT count(*) FROM consent_records") == 1


def test_practice_file_consent_defaults(tmp_path: Path) -> None:
    assert load_consent_defaults(None) == ConsentDefaults()
    assert not ConsentDefaults().allows(ConsentSubject.VOICEMAIL)
    assert not ConsentDefaults().allows(ConsentSubject.TEXT)
    practice = tmp_path / "practice.toml"
    practice.write_text('version = "1"\n[protocols.standard]\n'
                        '[consent_defaults]\nvoicemail = true\n')
    assert load_consent_defaults(practice).allows(ConsentSubject.VOICEMAIL)
    practice.write_text('version = "1"\n[protocols.standard]\n'
                        '[consent_defaults]\nemergency_contact = true\n')
    with pytest.raises(PracticeFileError, match=r"consent_defaults\.emergency_contact: "):
        load_consent_defaults(practice)


def test_stop_and_start_records_are_text_only() -> None:
    with pytest.raises(ValueError, match="source: a STOP reply"):
        ConsentEntry(client_ref=None, subject=ConsentSubject.TEXT, contact_point=PHONE,
                     granted=True, effective_at=datetime.now(UTC),
                     source=ConsentSource.STOP_REPLY, recorded_by="inbound")
    with pytest.raises(ValueError, match="client_ref: required"):
        ConsentEntry(client_ref=None, subject=ConsentSubject.CALL, contact_point=PHONE,
                     granted=False, effective_at=datetime.now(UTC),
                     source=ConsentSource.CLIENT_REQUEST, recorded_by="t-ana")


@pytest.fixture(scope="module")
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this module's own: its bookings wait a day ahead, and on
    the run's shared server a later test skipping time would run them with no worker."""
    env = await start_test_server()
    yield env
    await env.shutdown()


@pytest.fixture
async def app(own_env: WorkflowEnvironment, pool: asyncpg.Pool,
              task_queue: str) -> AsyncIterator[Application]:
    client = own_env.client
    settings = Settings(task_queue=task_queue, encryption_keys=TEST_KEYS)
    async with new_worker(client, pool, task_queue=task_queue,
                          sender=Sender("Alex", "+15555550100")), \
            Application(settings, client=client, pool=pool) as application:
        yield application


async def test_a_booking_with_only_the_client_ref_is_completed_from_the_directory(
    app: Application, pool: asyncpg.Pool, own_env: WorkflowEnvironment,
) -> None:
    clients = await app.clients()
    assert (await clients.add(client_data(), recorded_by="t-ana")).ok
    await clients.consent(consent_data(subject="emergency_contact", contact_point=CONTACT,
                                       scope="unreachable"))
    start = await future_start(own_env)
    data = booking_data(start=start.isoformat(), client={"ref": REF})

    started = await app.schedule(data)
    unknown = await app.schedule(booking_data(start=start.isoformat(),
                                              client={"ref": "c-nobody"}))

    assert started.kind is ResultKind.STARTED, started.message
    assert unknown.kind is ResultKind.BAD_INPUT
    assert unknown.message == "client.ref: no client 'c-nobody' in the directory"
    handle = own_env.client.get_workflow_handle(f"session-{data['session_id']}")
    history = await handle.fetch_history()
    started_event = history.events[0].workflow_execution_started_event_attributes
    [held] = await own_env.client.data_converter.decode(started_event.input.payloads,
                                                        [SessionBooking])
    assert (held.client.ref, held.client.phone, held.client.first_name) == (REF, PHONE, "Robin")
    assert held.client.email == "robin@example.org"
    assert held.client.preferences.call
    assert not held.client.preferences.text  # no record, conservative default
    assert not held.client.preferences.voicemail
    assert held.client.emergency_contact is not None
    assert held.client.emergency_contact.consent
    await handle.terminate()  # leave nothing waiting on the shared time-skipping server


async def test_a_booking_with_client_details_updates_the_directory_as_from_the_booking(
    app: Application, pool: asyncpg.Pool, own_env: WorkflowEnvironment,
) -> None:
    start = await future_start(own_env)
    data = booking_data(start=start.isoformat())
    ref = data["client"]["ref"]

    assert (await app.schedule(data)).kind is ResultKind.STARTED
    assert (await app.schedule(data)).kind is ResultKind.ALREADY_SCHEDULED
    await own_env.client.get_workflow_handle(f"session-{data['session_id']}").terminate()

    directory = ClientDirectory(pool)
    record = await directory.get(ref)
    assert record is not None
    assert [p.number for p in record.phones] == [PHONE]
    changes = await directory.changes(ref)
    assert [(c["action"], c["source"]) for c in changes] == [
        ("created", f"booking {data['session_id']}")]
    history = await directory.history(ref)
    assert {r.source for r in history} == {ConsentSource.BOOKING}
    # call and voicemail (the booking model's documented defaults) and the emergency
    # contact's stated consent, once; the booking said nothing of texts or email, and its
    # silence is not written down as a withdrawal (issue 25)
    assert sorted((r.subject.value, r.granted) for r in history) == [
        ("call", True), ("emergency_contact", True), ("voicemail", True)]


async def test_a_booking_records_the_withdrawals_it_states_and_no_others(
    app: Application, pool: asyncpg.Pool, own_env: WorkflowEnvironment,
) -> None:
    start = await future_start(own_env)
    data = booking_data(start=start.isoformat())
    data["client"]["preferences"] = {"text": False, "email": True}
    data["client"]["emergency_contact"] = {"name": "Sam", "phone": "+14155550999"}
    ref = data["client"]["ref"]

    assert (await app.schedule(data)).kind is ResultKind.STARTED
    await own_env.client.get_workflow_handle(f"session-{data['session_id']}").terminate()

    history = await ClientDirectory(pool).history(ref)
    assert sorted((r.subject.value, r.granted) for r in history) == [
        ("call", True), ("email", True), ("text", False), ("voicemail", True)]


async def test_an_emergency_contact_on_the_clients_own_number_is_refused_naming_the_field(
    app: Application, pool: asyncpg.Pool, own_env: WorkflowEnvironment,
) -> None:
    start = await future_start(own_env)
    data = booking_data(start=start.isoformat())
    data["client"]["emergency_contact"]["phone"] = data["client"]["phone"]

    refused = await app.schedule(data)

    assert refused.kind is ResultKind.BAD_INPUT
    assert "emergency_contact.phone" in refused.message
    assert "own number" in refused.message
    assert await ClientDirectory(pool).get(data["client"]["ref"]) is None


async def test_a_later_booking_never_gives_back_texts_a_stop_withdrew(
    app: Application, pool: asyncpg.Pool, own_env: WorkflowEnvironment,
) -> None:
    start = await future_start(own_env)
    first = booking_data(start=start.isoformat())
    first["client"]["preferences"] = {"text": True}
    ref = first["client"]["ref"]
    assert (await app.schedule(first)).kind is ResultKind.STARTED
    clients = await app.clients()
    stop = await clients.text_keyword(PHONE, opted_out=True)
    second = booking_data(start=start.isoformat(), client=first["client"])

    assert (await app.schedule(second)).kind is ResultKind.STARTED
    for sent in (first, second):  # nothing left waiting on the shared time-skipping server
        await own_env.client.get_workflow_handle(f"session-{sent['session_id']}").terminate()

    history = await ClientDirectory(pool).history(ref)
    answer = decide(history, client_ref=ref, subject=ConsentSubject.TEXT, contact_point=PHONE,
                    at=datetime.now(UTC), defaults=ConsentDefaults())
    assert stop.data is not None
    assert (answer.allowed, answer.record_id) == (False, stop.data["record_id"])


async def test_a_stop_holds_for_the_number_whatever_another_clients_booking_says(
    app: Application, pool: asyncpg.Pool, own_env: WorkflowEnvironment,
) -> None:
    """Issue 25: a STOP from a number, then a booking under another client ref with that
    number saying `text: true` (the grant is the booking's, dated after the STOP)."""
    clients = await app.clients()
    start = await future_start(own_env)
    first = booking_data(start=start.isoformat())
    assert (await app.schedule(first)).kind is ResultKind.STARTED
    stop = await clients.text_keyword(PHONE, opted_out=True)
    other = booking_data(start=start.isoformat())
    other["client"]["preferences"] = {"text": True}
    other_ref = other["client"]["ref"]

    assert (await app.schedule(other)).kind is ResultKind.STARTED
    for sent in (first, other):
        await own_env.client.get_workflow_handle(f"session-{sent['session_id']}").terminate()

    history = await ClientDirectory(pool).history(other_ref)
    answer = decide(history, client_ref=other_ref, subject=ConsentSubject.TEXT,
                    contact_point=PHONE, at=datetime.now(UTC), defaults=ConsentDefaults())
    assert stop.data is not None
    assert (answer.allowed, answer.record_id) == (False, stop.data["record_id"])
    start_again = await clients.text_keyword(PHONE, opted_out=False)
    assert start_again.data is not None
    history = await ClientDirectory(pool).history(other_ref)
    answer = decide(history, client_ref=other_ref, subject=ConsentSubject.TEXT,
                    contact_point=PHONE, at=datetime.now(UTC), defaults=ConsentDefaults())
    assert answer.allowed  # a START from the number proves the client's will
