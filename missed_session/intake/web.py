"""FHIR, Cal.com and Calendly over HTTP: each request in, its answer out.

On top of the shared executor (`dispatch.Intake`, its delivery rules and stored answers)
this adds what only these formats need:

- an Appointment that names its Patient by reference or identifier is completed from the
  client directory, read from the EHR with SMART Backend Services when needed
  (`patients`);
- a therapist-absent signal (a host no-show) stands the session's client outreach down
  and tells the practice (`WebDispatch`, `application.therapist_absent`);
- a Subscription notification is authenticated by its `X-Hub-Signature` (HMAC-SHA256 of
  the exact body with the subscription's secret) or the scheduler token; its events whose
  focus is a reference or an identifier are resolved against the configured FHIR base;
  a notification is never answered 200 while one of its events was not processed: 503
  when trying again may succeed (the EHR or the database could not be reached), else the
  event's error status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from missed_session.application import Application
from missed_session.application.results import Result
from missed_session.application.therapist_absent import Absence, therapist_absent
from missed_session.intake import answers, calcom, calendly, fhir, subscription
from missed_session.intake.absence import TherapistAbsent
from missed_session.intake.commands import Incoming, Refuse, Source
from missed_session.intake.dispatch import (
    ALIASED_SOURCES,
    RECEIPT_KINDS,
    Intake,
    Receipt,
    ReceiptKind,
    unstorable,
)
from missed_session.intake.patients import Miss, Patients
from missed_session.intake.settings import IntakeSettings
from missed_session.intake.signatures import SignatureError, verify_calcom, verify_calendly
from missed_session.intake.smart import BackendClient, FhirReader, FhirReadError
from missed_session.intake.webhook_parts import body_key, optional_instant
from missed_session.store.intake import StoredAnswer

Answer = tuple[int, str]
"""An HTTP status and a body."""
HUB_SIGNATURE = "x-hub-signature"
"""The rest-hook signature header (some servers send `X-Hub-Signature-256`)."""


class WebDispatch(Intake):
    """The shared executor, which also carries out a therapist-absent signal."""

    async def execute(self, incoming: Incoming) -> Receipt:
        """A `TherapistAbsent` through the application layer; anything else as usual."""
        command = incoming.command
        if not isinstance(command, TherapistAbsent) or command.session_id is None:
            return await super().execute(incoming)
        session = command.session_id
        if incoming.previous_ids or incoming.source in ALIASED_SOURCES:
            store = await self._store()
            session = await store.resolve(incoming.source.value,
                                          (*incoming.previous_ids, session))
        result = await therapist_absent(self._app, Absence(session, incoming.source.value,
                                                           command.note))
        return _outcome(result, session)


def _outcome(result: Result, session: str) -> Receipt:
    return Receipt(RECEIPT_KINDS[result.kind], result.message, result.session_id or session)


def subscription_secret(secrets: Mapping[str, str], subscription_ref: str) -> str | None:
    """The secret configured for a subscription, by its reference or its bare id."""
    bare = subscription_ref.rstrip("/").rsplit("/", 1)[-1]
    for key in (subscription_ref, f"Subscription/{bare}", bare):
        if key in secrets:
            return secrets[key]
    return None


def verify_hub_signature(secret: str, body: bytes, header: str) -> None:
    """Check `X-Hub-Signature: sha256=<hex>` (or the bare hex) over the exact body."""
    given = header.strip()
    given = given.split("=", 1)[1] if given.lower().startswith("sha256=") else given
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        msg = "X-Hub-Signature: does not match the body"
        raise SignatureError(msg)


def sign_hub(secret: str, body: bytes) -> str:
    """The header value a rest-hook sender sends for `body` (tests, docs)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebIntake:
    """FHIR Appointment and Subscription notifications, Cal.com and Calendly webhooks."""

    def __init__(self, dispatch: WebDispatch, app: Application,
                 settings: IntakeSettings) -> None:
        self.dispatch = dispatch
        self.settings = settings
        self._defaults = settings.defaults()
        self.reader = _reader(settings)
        self.patients = Patients(app, self.reader, self._defaults)

    @classmethod
    def over(cls, intake: Intake, settings: IntakeSettings) -> WebIntake:
        """The web intake sharing an executor's application and store."""
        # the executor's application (same package): one application, one pool
        return cls(WebDispatch(intake._app), intake._app, settings)

    # -- FHIR Appointment ---------------------------------------------------------------

    async def fhir_appointment(self, body: bytes) -> Answer:
        """A POSTed Appointment -> an OperationOutcome."""
        resource = _json(body)
        if not isinstance(resource, dict):
            incoming = Incoming(Source.FHIR, body_key(body),
                                Refuse("body: not a JSON resource", malformed=True))
            return _pair(await self.dispatch.answer(incoming, answers.as_operation_outcome))
        return _pair(await self._appointment_answer(resource, _appointment_key(resource, body),
                                                    None))

    async def _appointment_answer(self, resource: dict[str, Any], key: str,
                                  timestamp: datetime | None) -> StoredAnswer:
        if unstorable(key):  # refused before any lookup (PostgreSQL cannot hold it)
            return await self.dispatch.answer(
                Incoming(Source.FHIR, key, Refuse("unstorable", malformed=True)),
                answers.as_operation_outcome)
        first = await self.dispatch.stored(Source.FHIR, key)
        if first is not None:
            return first
        incoming = await self._appointment(resource, key, timestamp)
        if isinstance(incoming, Receipt):
            status, text = answers.as_operation_outcome(
                Incoming(Source.FHIR, key, Refuse(incoming.message)), incoming)
            return StoredAnswer(status, text, incoming.kind.value)
        return await self.dispatch.answer(incoming, answers.as_operation_outcome)

    async def _appointment(self, resource: dict[str, Any], key: str,
                           timestamp: datetime | None) -> Incoming | Receipt:
        """The message for an Appointment, its Patient resolved; an Receipt to send again."""
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        sent_at = (optional_instant(meta.get("lastUpdated")) if isinstance(meta, dict)
                   else None) or timestamp
        client = None
        unresolved = ""
        named = fhir.patient_named(resource) if resource.get("status") == "booked" else None
        if named is not None:
            found = await self.patients.client_for(named)
            if isinstance(found, Miss):
                if found.transient:
                    return Receipt(ReceiptKind.UNAVAILABLE,
                                   f"Appointment.participant (Patient): {found.message}; "
                                   "send it again")
                unresolved = found.message
            else:
                client = found
        command = fhir.translate(resource, self._defaults, client=client,
                                 unresolved=unresolved)
        return Incoming(Source.FHIR, key, fhir.therapist_absent(resource, command), sent_at)

    # -- FHIR Subscription notifications ------------------------------------------------

    def authenticate_notification(self, body: bytes, signature: str) -> str | None:
        """Why a signed notification is not authentic (None: it is)."""
        document = _json(body)
        try:
            notification = subscription.read(document)
        except subscription.NotificationError as error:
            return f"X-Hub-Signature: cannot tell the subscription ({error})"
        secrets = {key: value.get_secret_value()
                   for key, value in self.settings.fhir_subscription_secrets.items()}
        secret = subscription_secret(secrets, notification.subscription)
        if secret is None:
            return ("X-Hub-Signature: no secret is configured for this subscription "
                    "(MSR_INTAKE_FHIR_SUBSCRIPTION_SECRETS)")
        try:
            verify_hub_signature(secret, body, signature)
        except SignatureError as error:
            return str(error)
        return None

    async def fhir_notification(self, body: bytes) -> Answer:
        """A rest-hook notification -> an OperationOutcome with one issue per event.

        200 when every event was processed (applied, recorded, or already answered); 503
        when one could not be processed for now, so the sender retries (the events already
        answered are not applied again); otherwise the failing event's status.
        """
        try:
            notification = subscription.read(_json(body))
        except subscription.NotificationError as error:
            return 400, json.dumps(fhir.operation_outcome("error", "structure", str(error)))
        if notification.type is not subscription.NotificationType.EVENT_NOTIFICATION:
            text = f"{notification.type.value} received for {notification.subscription}"
            return 200, json.dumps(fhir.operation_outcome("information", "informational",
                                                          text))
        issues: list[dict[str, Any]] = []
        statuses: list[int] = []
        for event in notification.events:
            key = f"{notification.subscription}#{event.number}"
            answered = await self._event(event, key)
            statuses.append(answered.status)
            issues.extend(json.loads(answered.answer)["issue"])
        if not notification.events:
            issues.append({"severity": "information", "code": "informational",
                           "diagnostics": "event-notification without events"})
        failed = [status for status in statuses if status >= 400]
        status = 503 if 503 in failed else max(failed, default=200)
        return status, json.dumps({"resourceType": "OperationOutcome", "issue": issues})

    async def _event(self, event: subscription.NotificationEvent, key: str) -> StoredAnswer:
        first = await self.dispatch.stored(Source.FHIR, key)
        if first is not None:
            return first
        resource = event.resource
        if resource is None:
            fetched = await self._fetch_focus(event)
            if isinstance(fetched, Receipt):
                incoming = Incoming(Source.FHIR, key, Refuse(fetched.message))
                if fetched.kind is ReceiptKind.UNAVAILABLE:
                    status, text = answers.as_operation_outcome(incoming, fetched)
                    return StoredAnswer(status, text, fetched.kind.value)
                return await self.dispatch.answer(incoming, answers.as_operation_outcome)
            resource = fetched
        if resource.get("resourceType") != "Appointment":
            incoming = Incoming(Source.FHIR, key, Refuse(
                "notification-event.focus: not an Appointment (only Appointments are read)"))
            return await self.dispatch.answer(incoming, answers.as_operation_outcome)
        return await self._appointment_answer(resource, key, event.timestamp)

    async def _fetch_focus(self, event: subscription.NotificationEvent  # noqa: PLR0911
                           ) -> dict[str, Any] | Receipt:
        """An id-only event's focus, from the configured FHIR base (never anywhere else)."""
        if event.focus is None and event.focus_identifier is None:
            return Receipt(ReceiptKind.BAD_INPUT, "notification-event.focus: missing (an "
                           "empty notification names nothing to act on: subscribe with "
                           "id-only or full-resource content)")
        kind = fhir.reference_type(event.focus) if event.focus is not None else None
        if kind is not None and kind != "Appointment":
            article = "an" if kind[:1] in "AEIOU" else "a"
            return Receipt(ReceiptKind.BAD_INPUT, f"notification-event.focus: {article} {kind}, "
                           "not an Appointment (only Appointments are read)")
        if self.reader is None:
            return Receipt(ReceiptKind.BAD_INPUT,
                           "id-only notification, but no FHIR base is configured "
                           "(MSR_INTAKE_FHIR_BASE_URL) to read the Appointment from")
        try:
            if event.focus is not None:
                if self.reader.url(event.focus) is None:
                    return Receipt(ReceiptKind.BAD_INPUT, "notification-event.focus: not "
                                   "under the configured FHIR base")
                return await self.reader.read(event.focus)
            assert event.focus_identifier is not None
            system, value = event.focus_identifier
            found = await self.reader.search(
                "Appointment", identifier=f"{system}|{value}" if system else value)
        except FhirReadError as error:
            kind = ReceiptKind.UNAVAILABLE if error.transient else ReceiptKind.BAD_INPUT
            return Receipt(kind, f"notification-event.focus: {error}")
        if len(found) != 1:
            return Receipt(ReceiptKind.NOT_FOUND if not found else ReceiptKind.BAD_INPUT,
                           "notification-event.focus: the FHIR server has "
                           f"{'no' if not found else 'more than one'} Appointment with "
                           "this identifier")
        return found[0]

    # -- Cal.com and Calendly ---------------------------------------------------------

    async def calcom(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """A Cal.com delivery; 401 unless signed with the configured secret."""
        secret = self.settings.calcom_secret
        if secret is None:
            return _error(503, "Cal.com intake is not configured (MSR_INTAKE_CALCOM_SECRET)")
        try:
            verify_calcom(secret.get_secret_value(), body, headers.get("x-cal-signature-256"))
        except SignatureError as error:
            return _error(401, str(error))
        return _pair(await self.dispatch.answer(calcom.translate(body, self._defaults),
                                                answers.as_json))

    async def calendly(self, body: bytes, headers: Mapping[str, str],
                       now: datetime | None = None) -> Answer:
        """A Calendly delivery; 401 unless signed (and recent)."""
        key = self.settings.calendly_signing_key
        if key is None:
            return _error(503, "Calendly intake is not configured "
                               "(MSR_INTAKE_CALENDLY_SIGNING_KEY)")
        try:
            verify_calendly(key.get_secret_value(), body,
                            headers.get("calendly-webhook-signature"),
                            now or datetime.now(UTC), self.settings.calendly_tolerance)
        except SignatureError as error:
            return _error(401, str(error))
        return _pair(await self.dispatch.answer(calendly.translate(body, self._defaults),
                                                answers.as_json))


def _reader(settings: IntakeSettings) -> FhirReader | None:
    if not settings.fhir_base_url:
        return None
    client = None
    if settings.fhir_client_id and settings.fhir_private_key is not None:
        client = BackendClient(client_id=settings.fhir_client_id,
                               private_key_pem=settings.fhir_private_key.get_secret_value(),
                               key_id=settings.fhir_key_id, token_url=settings.fhir_token_url)
    authorization = (settings.fhir_authorization.get_secret_value()
                     if settings.fhir_authorization is not None else None)
    return FhirReader(settings.fhir_base_url, client=client, authorization=authorization)


def _appointment_key(resource: dict[str, Any], body: bytes) -> str:
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    version = meta.get("versionId") if isinstance(meta, dict) else None
    if version and resource.get("id"):
        return f"Appointment/{resource.get('id')}/_history/{version}"
    return body_key(body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def _pair(answer: StoredAnswer) -> Answer:
    return answer.status, answer.answer


def _error(status: int, message: str) -> Answer:
    return status, json.dumps({"outcome": "refused", "message": message})
