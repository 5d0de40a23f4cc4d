"""The standards translators, pure: each status, trigger and event -> one intake command."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from missed_session.domain.models import Client, Modality
from missed_session.intake import ack, calcom, calendly, fhir, hl7v2, subscription
from missed_session.intake.absence import TherapistAbsent
from missed_session.intake.ack import AckCode
from missed_session.intake.commands import (
    Attended,
    Book,
    Cancel,
    CheckIn,
    NoShow,
    Record,
    Refuse,
)
from missed_session.intake.fields import (
    DIRECTORY_MISSING,
    IncompleteError,
    phone_number,
)
from missed_session.intake.signatures import (
    SignatureError,
    sign_calcom,
    sign_calendly,
    verify_calcom,
    verify_calendly,
)
from tests.support import intake_samples as samples
from tests.support.intake_translators import DEFAULTS, START

# -- FHIR ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    ("proposed", Record), ("pending", Record), ("waitlist", Record), ("booked", Book),
    ("arrived", CheckIn), ("checked-in", CheckIn), ("cancelled", Cancel),
    ("noshow", NoShow), ("fulfilled", Attended), ("entered-in-error", Cancel),
])
def test_each_fhir_status_has_its_command(status: str, expected: type) -> None:
    command = fhir.translate(samples.fhir_appointment("a-1", status, START), DEFAULTS)
    assert type(command) is expected
    assert command.session_id == "a-1"


def test_booked_appointment_is_a_complete_booking() -> None:
    command = fhir.translate(samples.fhir_appointment("a-1", "booked", START), DEFAULTS)
    assert isinstance(command, Book)
    assert command.booking is not None
    booking = command.booking
    assert booking.start == START
    assert booking.client.ref == "12345"
    assert booking.client.first_name == "Peter"
    assert booking.client.phone == "+14155550123"
    assert booking.client.time_zone == "America/Los_Angeles"
    assert booking.therapist_id == "t-ana"
    assert booking.duration_minutes == 50


def test_entered_in_error_is_marked_so() -> None:
    command = fhir.translate(samples.fhir_appointment("a-1", "entered-in-error", START),
                             DEFAULTS)
    assert isinstance(command, Cancel)
    assert command.entered_in_error


def test_patient_only_by_reference_needs_the_directory() -> None:
    resource = samples.fhir_appointment("a-1", "booked", START, contained=False)
    assert fhir.patient_named(resource) == fhir.PatientNamed("Patient/example", ())
    command = fhir.translate(resource, DEFAULTS, unresolved="no client is linked")
    assert isinstance(command, Book)
    assert command.booking is None
    assert "the Patient is not contained, and no client is linked" in command.incomplete
    client = Client(ref="c-77", first_name="Robin", phone="+14155550199",
                    time_zone="America/Denver")
    booked = fhir.translate(resource, DEFAULTS, client=client)
    assert isinstance(booked, Book)
    assert booked.booking is not None
    assert booked.booking.client == client


def test_patient_by_identifier_only() -> None:
    resource = samples.fhir_appointment("a-1", "booked", START, contained=False)
    resource["participant"][0]["actor"] = {
        "type": "Patient", "identifier": {"system": "urn:mrn", "value": "M-9"}}
    assert fhir.patient_named(resource) == fhir.PatientNamed(None, (("urn:mrn", "M-9"),))
    assert fhir.patient_named(samples.fhir_appointment("a-1", "booked", START)) is None


def test_noshow_with_the_practitioner_declined_is_the_therapists_absence() -> None:
    resource = samples.fhir_appointment("a-1", "noshow", START)
    assert isinstance(fhir.therapist_absent(resource, fhir.translate(resource, DEFAULTS)),
                      NoShow)
    resource["participant"][1]["status"] = "declined"
    command = fhir.therapist_absent(resource, fhir.translate(resource, DEFAULTS))
    assert isinstance(command, TherapistAbsent)
    assert command.session_id == "a-1"


def test_missing_phone_is_refused_without_echoing_anything() -> None:
    command = fhir.translate(samples.fhir_appointment("a-1", "booked", START, phone=None),
                             DEFAULTS)
    assert isinstance(command, Book)
    assert command.booking is None
    assert command.incomplete.startswith("Patient.telecom: no client phone number")


def test_r5_fields_are_tolerated_and_read() -> None:
    resource = samples.fhir_appointment("a-1", "booked", START)
    resource["virtualService"] = [{"channelType": {"code": "zoom"}}]
    resource["subject"] = {"reference": "#pat"}
    resource["serviceType"] = [{"concept": {"text": "Therapy"}}]
    command = fhir.translate(resource, DEFAULTS)
    assert isinstance(command, Book)
    assert command.booking is not None
    assert command.booking.modality is Modality.TELEHEALTH


@pytest.mark.parametrize(("change", "reason"), [
    ({"status": "bogus"}, "Appointment.status: unknown status 'bogus'"),
    ({"start": "2030-03-04T10:00:00"}, "Appointment.start"),
    ({"resourceType": "Patient"}, "resourceType: expected Appointment"),
    ({"id": None}, "Appointment.id"),
])
def test_bad_appointments_are_refused_naming_the_field(change: dict[str, object],
                                                       reason: str) -> None:
    resource = {**samples.fhir_appointment("a-1", "booked", START), **change}
    command = fhir.translate({k: v for k, v in resource.items() if v is not None}, DEFAULTS)
    assert isinstance(command, Refuse | Book)
    text = command.reason if isinstance(command, Refuse) else command.incomplete
    assert text.startswith(reason)


def test_operation_outcome_is_a_valid_r4_resource() -> None:
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    document = fhir.operation_outcome("error", "conflict", "session a-1 refused: closed")
    assert OperationOutcome.model_validate(document).issue[0].code == "conflict"


# -- Subscription notifications -------------------------------------------------------------


def test_r4_full_resource_notification() -> None:
    appointment = samples.fhir_appointment("a-1", "booked", START)
    bundle = samples.r4_notification("https://ehr.example/fhir/Subscription/s1", 7,
                                     appointment, "https://ehr.example/fhir/Appointment/a-1")
    read = subscription.read(bundle)
    assert read.type is subscription.NotificationType.EVENT_NOTIFICATION
    assert read.subscription == "https://ehr.example/fhir/Subscription/s1"
    [event] = read.events
    assert (event.number, event.resource) == ("7", appointment)


def test_r4b_id_only_notification_with_r5_spellings() -> None:
    bundle = samples.r4b_notification("Subscription/s1", 8, "Appointment/a-1")
    [event] = subscription.read(bundle).events
    assert (event.number, event.focus, event.resource) == ("8", "Appointment/a-1", None)


@pytest.mark.parametrize("kind", ["handshake", "heartbeat"])
def test_handshake_and_heartbeat_carry_no_events(kind: str) -> None:
    for bundle in (samples.r4_notification("Subscription/s1", 0, None, "", kind),
                   samples.r4b_notification("Subscription/s1", 0, None, kind=kind)):
        read = subscription.read(bundle)
        assert (read.type.value, read.events) == (kind, ())


@pytest.mark.parametrize(("bundle", "reason"), [
    ({"resourceType": "Appointment"}, "resourceType"),
    ({"resourceType": "Bundle", "entry": []}, "Bundle.entry[0].resource"),
    ({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]},
     "Bundle.entry[0].resource"),
])
def test_not_a_notification(bundle: dict[str, object], reason: str) -> None:
    with pytest.raises(subscription.NotificationError, match=reason.replace("[", r"\[")):
        subscription.read(bundle)


# -- HL7 v2 SIU --------------------------------------------------------------------------------


@pytest.mark.parametrize(("trigger", "status", "expected"), [
    ("S12", "Booked", Book), ("S13", "Booked", Book), ("S14", "Booked", Book),
    ("S14", "ARRIVED", CheckIn), ("S14", "Noshow", NoShow), ("S14", "Complete", Attended),
    ("S15", "Cancelled", Cancel), ("S17", "Deleted", Cancel), ("S26", "Noshow", NoShow),
])
def test_each_siu_trigger_has_its_command(trigger: str, status: str, expected: type) -> None:
    text = samples.siu(trigger, "M1", "10345", START, filler_status=status)
    translated = hl7v2.translate(text, DEFAULTS)
    assert type(translated.incoming.command) is expected
    assert translated.incoming.command.session_id == "10345"
    assert translated.incoming.key == "MESA_OP|XYZ_HOSPITAL|M1"


@pytest.mark.parametrize("version", ["2.2", "2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_versions_and_separators(version: str, separator: str) -> None:
    tq1 = version >= "2.5"
    text = samples.siu("S12", "M1", "10345", START, version=version, tq1=tq1,
                       separator=separator)
    command = hl7v2.translate(text, DEFAULTS).incoming.command
    assert isinstance(command, Book)
    assert command.booking is not None
    assert command.start == START
    assert command.booking.client.phone == "+14155550123"
    assert command.booking.therapist_id == "t-ana"


def test_tq1_wins_over_sch_11() -> None:
    text = samples.siu("S12", "M1", "10345", START, version="2.5", tq1=True)
    later = START + timedelta(hours=2)
    text = text.replace("|50|m|||", f"|50|m|^^50^{samples.hl7_time(later)}||")
    command = hl7v2.translate(text, DEFAULTS).incoming.command
    assert isinstance(command, Book)
    assert command.start == START


def test_offsets_are_kept_as_instants() -> None:
    tokyo = START.astimezone(timezone(timedelta(hours=9)))
    command = hl7v2.translate(samples.siu("S12", "M1", "1", tokyo), DEFAULTS).incoming.command
    assert isinstance(command, Book)
    assert command.start == START
    assert command.start.utcoffset() == timedelta(hours=9)


def test_time_without_offset_is_the_practice_zone_not_the_host() -> None:
    text = samples.siu("S12", "M1", "1", START).replace("-0800", "")
    command = hl7v2.translate(text, DEFAULTS).incoming.command
    assert isinstance(command, Book)
    assert command.start == START  # 10:00 in Los Angeles in March 2030 is -08:00


@pytest.mark.parametrize(("local", "says"), [
    (datetime(2030, 3, 10, 2, 30, tzinfo=timezone(timedelta(hours=-8))), "does not exist"),
    (datetime(2030, 11, 3, 1, 30, tzinfo=timezone(timedelta(hours=-8))), "happens twice"),
])
def test_a_time_without_offset_that_names_no_instant_or_two_is_refused(
        local: datetime, says: str) -> None:
    """Issue 25: 02:30 on the spring-forward day (and 01:30 on the autumn one) without an
    offset is refused naming the field, never quietly given an hour's offset."""
    text = samples.siu("S12", "M1", "1", local).replace("-0800", "")
    command = hl7v2.translate(text, DEFAULTS).incoming.command
    assert isinstance(command, Refuse)
    assert "SCH-11.4" in command.reason
    assert f"{says} in America/Los_Angeles" in command.reason


@pytest.mark.parametrize(("mangle", "code", "malformed", "reason"), [
    (lambda t: samples.siu("S12", "M1", "1", START, segments=("MSH", "PID")), "100", True,
     "SCH: the message has no SCH segment"),
    (lambda t: t.replace("SIU^S12", "SIU^S99"), "201", True, "MSH-9: unknown SIU trigger"),
    (lambda t: t.replace("SIU^S12", "ADT^A01"), "200", True, "MSH-9: unsupported message"),
    (lambda t: t.replace(samples.hl7_time(START), "2030-03-04 10:00"), "102", False,
     "SCH-11.4: not an HL7 timestamp"),
    (lambda t: t.replace("|M1|", "||"), "101", True, "MSH-10"),
    (lambda t: "garbage", "100", True, "MSH"),
    (lambda t: t.replace("SIU^S12", "SIU^S16"), "201", False, "MSH-9: SIU^S16 is not"),
])
def test_malformed_siu_is_refused(mangle: object, code: str, malformed: bool,
                                  reason: str) -> None:
    assert callable(mangle)
    translated = hl7v2.translate(mangle(samples.siu("S12", "M1", "1", START)), DEFAULTS)
    command = translated.incoming.command
    assert isinstance(command, Refuse)
    assert command.reason.startswith(reason)
    assert (translated.error_code, command.malformed) == (code, malformed)


def test_siu_without_phone_is_an_incomplete_booking() -> None:
    command = hl7v2.translate(samples.siu("S12", "M1", "1", START, phone=""),
                              DEFAULTS).incoming.command
    assert isinstance(command, Book)
    assert command.booking is None
    assert command.incomplete.startswith("PID-13: no client phone number")
    assert DIRECTORY_MISSING in command.incomplete


def test_cellular_xtn_components_are_preferred() -> None:
    text = samples.siu("S12", "M1", "1", START, phone="(260)555-1234~^PRN^CP^^1^415^5550199")
    command = hl7v2.translate(text, DEFAULTS).incoming.command
    assert isinstance(command, Book)
    assert command.booking is not None
    assert command.booking.client.phone == "+14155550199"


# -- ACKs ---------------------------------------------------------------------------------------

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("version", "err"), [
    ("2.3", "ERR|^^^207&session 1 refused: closed&HL70357"),
    ("2.5", "ERR|||207^session 1 refused: closed^HL70357|E||||session 1 refused: closed"),
])
def test_ack_segments(version: str, err: str) -> None:
    header = hl7v2.translate(samples.siu("S12", "M1", "1", START, version=version),
                             DEFAULTS).header
    text = ack.build(header, AckCode.ERROR, "session 1 refused: closed", control_id="A1",
                     now=NOW, error_code="207")
    msh, msa, error, end = text.split("\r")
    assert msh.startswith("MSH|^~\\&|iFW|ABC_HOSPITAL|MESA_OP|XYZ_HOSPITAL|20300101120000")
    assert msh.endswith(f"|A1|P|{version}")
    assert msa == "MSA|AE|M1|session 1 refused: closed"
    assert (error, end) == (err, "")


def test_ack_escapes_delimiters() -> None:
    header = hl7v2.Header(control_id="M1")
    text = ack.build(header, AckCode.ACCEPT, "a|b^c&d~e\\f", control_id="A", now=NOW)
    assert "MSA|AA|M1|a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f" in text


@pytest.mark.parametrize(("msh15", "msh16", "code", "wanted"), [
    ("", "", AckCode.ACCEPT, True), ("NE", "NE", AckCode.ACCEPT, False),
    ("NE", "NE", AckCode.ERROR, False), ("AL", "ER", AckCode.ACCEPT, False),
    ("AL", "ER", AckCode.ERROR, True), ("", "SU", AckCode.REJECT, False),
    ("NE", "", AckCode.ERROR, False), ("AL", "AL", AckCode.ACCEPT, True),
])
def test_msh_15_16_decide_whether_to_ack(msh15: str, msh16: str, code: AckCode,
                                         wanted: bool) -> None:
    header = hl7v2.Header(accept_ack_type=msh15, application_ack_type=msh16)
    assert ack.wanted(header, code) is wanted


# -- Cal.com ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("trigger", "extra", "expected"), [
    ("BOOKING_CREATED", {}, Book), ("BOOKING_RESCHEDULED", {"reschedule_uid": "old"}, Book),
    ("BOOKING_CANCELLED", {}, Cancel), ("BOOKING_NO_SHOW_UPDATED", {}, NoShow),
    ("AFTER_GUESTS_CAL_VIDEO_NO_SHOW", {}, NoShow),
    ("AFTER_HOSTS_CAL_VIDEO_NO_SHOW", {}, TherapistAbsent), ("BOOKING_REQUESTED", {}, Record),
    ("PING", {}, Record),
])
def test_each_calcom_trigger(trigger: str, extra: dict[str, Any], expected: type) -> None:
    incoming = calcom.translate(samples.calcom(trigger, "uid1", START, **extra), DEFAULTS)
    assert type(incoming.command) is expected
    assert incoming.command.session_id == "cal-uid1"
    if trigger == "BOOKING_RESCHEDULED":
        assert incoming.previous_ids == ("cal-old",)


def test_calcom_booking_fields() -> None:
    command = calcom.translate(samples.calcom("BOOKING_CREATED", "uid1", START),
                               DEFAULTS).command
    assert isinstance(command, Book)
    assert command.booking is not None
    client = command.booking.client
    assert (client.first_name, client.phone, client.time_zone) == (
        "Sam", "+14155550123", "America/Chicago")
    assert client.ref.startswith("cal-")
    assert "sam" not in client.ref
    assert command.booking.therapist_id == "cal-t-ana"


def test_calcom_unmarked_no_show_is_a_check_in_and_host_no_show_is_the_therapists() -> None:
    unmarked = samples.calcom("BOOKING_NO_SHOW_UPDATED", "u", START,
                              attendees=[{"email": "sam@example.com", "noShow": False}],
                              message="x_unmarked_as_no_show")
    assert isinstance(calcom.translate(unmarked, DEFAULTS).command, CheckIn)
    host = samples.calcom("BOOKING_NO_SHOW_UPDATED", "u", START, attendees=[],
                          noShowHost=True)
    assert isinstance(calcom.translate(host, DEFAULTS).command, TherapistAbsent)


def test_calcom_cancellation_reason_is_not_carried() -> None:
    command = calcom.translate(samples.calcom("BOOKING_CANCELLED", "u", START),
                               DEFAULTS).command
    assert isinstance(command, Cancel)
    assert "anxiety" not in command.reason


def test_calcom_without_phone_books_the_client_by_email() -> None:
    # Issue 25: an attendee with an email address and no phone is bookable; the ladder
    # emails them (a phone that is given must still be usable).
    command = calcom.translate(samples.calcom("BOOKING_CREATED", "u", START, phone=None),
                               DEFAULTS).command
    assert isinstance(command, Book)
    assert command.booking is not None
    assert command.booking.client.phone is None
    assert command.booking.client.email is not None


def test_calcom_same_body_same_key() -> None:
    body = samples.calcom("BOOKING_CREATED", "u", START)
    assert calcom.translate(body, DEFAULTS).key == calcom.translate(body, DEFAULTS).key


# -- Calendly -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "rescheduled", "expected"), [
    ("invitee.created", False, Book), ("invitee.canceled", False, Cancel),
    ("invitee.canceled", True, Record), ("invitee_no_show.created", False, NoShow),
    ("invitee_no_show.deleted", False, CheckIn),
])
def test_each_calendly_event(event: str, rescheduled: bool, expected: type) -> None:
    body = samples.calendly(event, "INV1", START, rescheduled=rescheduled)
    incoming = calendly.translate(body, DEFAULTS)
    assert type(incoming.command) is expected
    assert incoming.command.session_id == "calendly-INV1"


def test_calendly_reschedule_names_the_old_invitee() -> None:
    body = samples.calendly("invitee.created", "INV2", START, old_invitee="INV1")
    incoming = calendly.translate(body, DEFAULTS)
    assert incoming.previous_ids == ("calendly-INV1",)
    command = incoming.command
    assert isinstance(command, Book)
    assert command.booking is not None
    assert command.booking.modality is Modality.TELEHEALTH
    assert command.booking.therapist_id == "t-ana"  # mapped from the Calendly user URI
    assert command.booking.client.phone == "+14155550123"


def test_calendly_cancellation_reason_is_not_carried() -> None:
    command = calendly.translate(samples.calendly("invitee.canceled", "I", START),
                                 DEFAULTS).command
    assert isinstance(command, Cancel)
    assert command.reason == "cancelled in Calendly by the invitee"


@pytest.mark.parametrize("body", [b"not json", b"[]", json.dumps({"event": "x"}).encode()])
def test_unreadable_webhooks_are_malformed(body: bytes) -> None:
    for translate in (calcom.translate, calendly.translate):
        command = translate(body, DEFAULTS).command
        assert isinstance(command, Refuse)
        assert command.malformed


# -- signatures and fields ---------------------------------------------------------------------


def test_calcom_signature() -> None:
    body = b'{"a": 1}'
    verify_calcom("s3cret", body, sign_calcom("s3cret", body))
    with pytest.raises(SignatureError, match="does not match"):
        verify_calcom("s3cret", body + b" ", sign_calcom("s3cret", body))
    with pytest.raises(SignatureError, match="missing"):
        verify_calcom("s3cret", body, None)


def test_calendly_signature_and_tolerance() -> None:
    body = b'{"a": 1}'
    at = datetime(2030, 1, 1, tzinfo=UTC)
    verify_calendly("key", body, sign_calendly("key", body, at), at + timedelta(minutes=2))
    with pytest.raises(SignatureError, match="timestamp is 240 s from now"):
        verify_calendly("key", body, sign_calendly("key", body, at), at + timedelta(minutes=4))
    with pytest.raises(SignatureError, match="does not match"):
        verify_calendly("other", body, sign_calendly("key", body, at), at)
    with pytest.raises(SignatureError, match="expected t="):
        verify_calendly("key", body, "v1=abc", at)


@pytest.mark.parametrize(("raw", "expected"), [
    ("+1 (415) 555-0123", "+14155550123"), ("415.555.0123", "+14155550123"),
    ("1-415-555-0123", "+14155550123"), ("0044 20 7946 0958", "+442079460958"),
])
def test_phone_numbers(raw: str, expected: str) -> None:
    assert phone_number(raw, "f", DEFAULTS) == expected


def test_a_short_number_is_not_blamed_on_the_country_code() -> None:
    with pytest.raises(IncompleteError, match="too few digits"):
        phone_number("5551", "PID-13", DEFAULTS)


def test_free_text_reasons_are_not_carried() -> None:
    resource = samples.fhir_appointment("a-1", "cancelled", START)
    resource["cancelationReason"]["text"] = "admitted after an overdose"
    command = fhir.translate(resource, DEFAULTS)
    assert isinstance(command, Cancel)
    assert command.reason == "cancelled in the scheduler (reason code pat)"
    text = samples.siu("S15", "M1", "1", START).replace(
        "|OFFICE^Office visit|", "|PAT^admitted after an overdose|")
    command = hl7v2.translate(text, DEFAULTS).incoming.command
    assert isinstance(command, Cancel)
    assert command.reason == "cancelled (SIU^S15, reason code PAT)"
