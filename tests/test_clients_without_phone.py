"""Clients without a phone (issue 25): the rules, and each translator's reading of them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from missed_session.application.clients import ClientUseCases
from missed_session.domain import protocol
from missed_session.domain.clients import (
    ClientRecord,
    ConsentDefaults,
    EmailPoint,
    PhonePoint,
    reach,
    record_from_booking,
    snapshot,
)
from missed_session.domain.models import Channel, Client, SessionBooking
from missed_session.intake import fhir, hl7v2
from missed_session.intake.commands import Book
from tests.support import intake_samples as samples
from tests.support.factories import booking
from tests.support.intake_stack import Stack, framed, new_id, running_stack
from tests.support.intake_translators import DEFAULTS, START

EARLY = START


def client(**fields: object) -> Client:
    data: dict[str, object] = {"ref": "c-1", "first_name": "Robin",
                               "time_zone": "America/New_York", **fields}
    return Client.model_validate(data)


def booked(person: Client, *channels: Channel) -> SessionBooking:
    session = booking()
    settings = session.protocol.model_copy(update={"channels": channels or
                                                   session.protocol.channels})
    return session.model_copy(update={"client": person, "protocol": settings})


def test_a_client_with_no_way_to_be_reached_is_refused_naming_the_phone() -> None:
    with pytest.raises(ValidationError, match="phone: the client has no phone number"):
        client()
    with pytest.raises(ValidationError, match="landline: there is no phone number"):
        client(email="r@example.org", landline=True)
    assert client(email="r@example.org").phone is None


@given(channel=st.sampled_from(Channel), phone=st.booleans(), landline=st.booleans())
def test_the_ladder_skips_what_the_client_has_no_address_for(
    channel: Channel, phone: bool, landline: bool,
) -> None:
    person = client(email="r@example.org", preferences={
        "call": True, "voicemail": True, "text": True, "email": True},
        **({"phone": "+14155550100", "landline": landline} if phone else {}))
    reason = protocol.skip_reason(booked(person), channel)
    if channel is Channel.EMAIL:
        assert reason is None
    elif not phone:
        assert reason == protocol.NO_PHONE
    elif landline and channel is Channel.TEXT:
        assert reason == protocol.NO_MOBILE
    else:
        assert reason is None


def test_an_email_only_clients_ladder_includes_email() -> None:
    person = client(email="r@example.org")
    assert protocol.outreach_channels(booked(person, Channel.CALL)) == (
        Channel.CALL, Channel.EMAIL)
    with_phone = client(phone="+14155550100", email="r@example.org")
    assert protocol.outreach_channels(booked(with_phone, Channel.CALL)) == (Channel.CALL,)


def test_the_directory_snapshots_email_only_and_landline_clients() -> None:
    mail = ClientRecord(ref="c-1", first_name="Robin", time_zone="America/New_York",
                        emails=(EmailPoint(address="r@example.org"),))
    taken = snapshot(mail, [], at=EARLY, defaults=ConsentDefaults())
    assert (taken.phone, taken.email, taken.preferences.call) == (None, "r@example.org", False)
    refusal = reach(mail, [], Channel.CALL, at=EARLY, defaults=ConsentDefaults())
    assert getattr(refusal, "reason", None) == "no phone number on file"
    land = ClientRecord(ref="c-2", first_name="Pat", time_zone="America/New_York",
                        phones=(PhonePoint(number="+14155550166", use="home"),))
    assert snapshot(land, [], at=EARLY, defaults=ConsentDefaults()).landline is True
    nobody = ClientRecord(ref="c-3", first_name="Lee", time_zone="America/New_York")
    with pytest.raises(ValueError, match="no phone number and no email address"):
        snapshot(nobody, [], at=EARLY, defaults=ConsentDefaults())
    # A landline booking records the number as one texts never go to.
    recorded = record_from_booking(client(phone="+14155550166", landline=True), None)
    assert [point.use.value for point in recorded.phones] == ["home"]


def test_fhir_patient_with_only_an_email_is_booked() -> None:
    resource = samples.fhir_appointment("a-1", "booked", START, phone=None)
    resource["contained"][0]["telecom"] = [{"system": "email", "value": "p@example.org"}]
    command = fhir.translate(resource, DEFAULTS)
    assert isinstance(command, Book)
    assert command.booking is not None
    assert (command.booking.client.phone, command.booking.client.email) == (
        None, "p@example.org")


def test_hl7_pid_13_with_only_an_email_is_booked() -> None:
    text = samples.siu("S12", "M1", "1", START, phone="^NET^Internet^p@example.org")
    command = hl7v2.translate(text, DEFAULTS).incoming.command
    assert isinstance(command, Book)
    assert command.booking is not None, command.incomplete
    assert (command.booking.client.phone, command.booking.client.email) == (
        None, "p@example.org")


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue) as running:
        yield running


async def test_an_siu_without_contact_points_is_completed_from_the_directory(
    stack: Stack, pool: asyncpg.Pool,
) -> None:
    # PID-13 empty: the client directory knows PID-3's client, as a ref-only booking.
    unknown = new_id()
    [refused] = await stack.mllp(framed(samples.siu("S12", "D1", unknown, stack.start,
                                                    phone="")))
    assert "PID-13: no client phone number or email address" in refused
    assert not await stack.exists(unknown)
    clients = ClientUseCases(pool, defaults=ConsentDefaults())
    added = await clients.add({"ref": "42", "first_name": "Paul", "time_zone": "UTC",
                               "emails": [{"address": "paul@example.org"}]},
                              recorded_by="t-ana")
    assert added.ok, added.message
    session = new_id()
    [ack] = await stack.mllp(framed(samples.siu("S12", "D2", session, stack.start, phone="")))
    assert "|AA|D2" in ack, ack
    assert await stack.exists(session)
