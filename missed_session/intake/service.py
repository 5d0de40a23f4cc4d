"""The standards intake as one object: each format's request in, its answer out.

The HTTP routes and the MLLP listener both call this; it parses, translates, executes
through `Intake` and renders. It holds no state of its own beyond its connections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from missed_session.application import Application
from missed_session.intake import answers, calcom, calendly, fhir, hl7v2, subscription
from missed_session.intake.commands import (
    Attended,
    Book,
    Cancel,
    CheckIn,
    Command,
    Incoming,
    NoShow,
    Record,
    Refuse,
    Source,
)
from missed_session.intake.dispatch import Intake, Receipt, ReceiptKind
from missed_session.intake.settings import IntakeSettings, NonProduction
from missed_session.intake.signatures import SignatureError, verify_calcom, verify_calendly
from missed_session.intake.webhook_parts import body_key, optional_instant
from missed_session.store.intake import StoredAnswer

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
"""How long an id-only notification may wait for the sender's FHIR server."""

Answer = tuple[int, str]
"""An HTTP status and a body."""


class StandardsIntake:
    """FHIR, HL7 v2, Cal.com and Calendly requests -> answers."""

    def __init__(self, intake: Intake, settings: IntakeSettings) -> None:
        self.intake = intake
        self.settings = settings
        self._defaults = settings.defaults()

    # -- HL7 v2 ------------------------------------------------------------------------

    async def hl7(self, message: str | bytes) -> Answer:
        """One SIU message (any segment separator) -> its ACK (204 and "" for none).

        Bytes are read as UTF-8, or as ISO 8859 when MSH-18 says so. A message whose MSH-11
        is T (training) or D (debugging) is refused (AR 202), or with the dry-run setting
        checked and answered without doing or recording anything.
        """
        if isinstance(message, bytes):
            decoded = hl7v2.decode(message)
            translated = (decoded if isinstance(decoded, hl7v2.Translated)
                          else hl7v2.translate(decoded, self._defaults))
        else:
            translated = hl7v2.translate(message, self._defaults)
        if translated.non_production and not isinstance(translated.incoming.command, Refuse):
            return self._non_production(translated)
        render = answers.as_ack(translated.header, translated.error_code)
        return _pair(await self.intake.answer(translated.incoming, render))

    def _non_production(self, translated: hl7v2.Translated) -> Answer:
        """A training or debugging message: refused, or a dry run; never recorded."""
        header = translated.header
        processing = header.processing_id[:1].upper()
        mode = f"MSH-11 processing id {processing} ({hl7v2.NON_PRODUCTION[processing]})"
        command = translated.incoming.command
        session = getattr(command, "session_id", None)
        if self.settings.hl7_non_production is NonProduction.DRY_RUN:
            outcome = Receipt(ReceiptKind.RECORDED,
                              f"dry run ({mode}): the message is readable and would "
                              f"{_would(command)}; nothing done, nothing recorded", session)
            return answers.as_ack(header)(translated.incoming, outcome)
        outcome = Receipt(ReceiptKind.MALFORMED,
                          f"{mode}: this service acts only on production messages (P); "
                          "nothing done", session)
        return answers.as_ack(header, "202")(translated.incoming, outcome)

    # -- FHIR ----------------------------------------------------------------------------

    async def fhir_appointment(self, body: bytes) -> Answer:
        """A POSTed Appointment -> an OperationOutcome."""
        resource = _json(body)
        if not isinstance(resource, dict):
            return _pair(await self.intake.answer(
                Incoming(Source.FHIR, body_key(body), Refuse("body: not a JSON resource",
                                                               malformed=True)),
                answers.as_operation_outcome))
        incoming = self._appointment(resource, body_key(body))
        return _pair(await self.intake.answer(incoming, answers.as_operation_outcome))

    def _appointment(self, resource: dict[str, Any], fallback_key: str,
                     key: str | None = None) -> Incoming:
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        version = meta.get("versionId") if isinstance(meta, dict) else None
        if key is None:
            key = (f"Appointment/{resource.get('id')}/_history/{version}" if version
                   and resource.get("id") else fallback_key)
        sent_at = optional_instant(meta.get("lastUpdated")) if isinstance(meta, dict) else None
        return Incoming(Source.FHIR, key, fhir.translate(resource, self._defaults), sent_at)

    async def fhir_notification(self, body: bytes) -> Answer:
        """A Subscription rest-hook notification -> 200 with an OperationOutcome per event.

        A handshake or heartbeat is acknowledged; each event is one message, keyed by its
        subscription and event number, so a re-sent notification applies nothing twice.
        503 when any event could not be processed for now (the sender retries; the events
        already answered are not applied again).
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
        retry = False
        for event in notification.events:
            key = f"{notification.subscription}#{event.number}"
            outcome_answer = await self._event(event, key)
            retry = retry or outcome_answer.status == 503
            issues.extend(json.loads(outcome_answer.answer)["issue"])
        if not notification.events:
            issues.append({"severity": "information", "code": "informational",
                           "diagnostics": "event-notification without events"})
        document = {"resourceType": "OperationOutcome", "issue": issues}
        return (503 if retry else 200), json.dumps(document)

    async def _event(self, event: subscription.NotificationEvent, key: str) -> StoredAnswer:
        first = await self.intake.stored(Source.FHIR, key)
        if first is not None:
            return first
        resource = event.resource
        if resource is None:
            fetched = await self._fetch(event.focus)
            if isinstance(fetched, Receipt):
                if fetched.kind is ReceiptKind.UNAVAILABLE:
                    status, text = answers.as_operation_outcome(
                        Incoming(Source.FHIR, key, Refuse(fetched.message)), fetched)
                    return StoredAnswer(status, text, fetched.kind.value)
                return await self.intake.answer(
                    Incoming(Source.FHIR, key, Refuse(fetched.message)),
                    answers.as_operation_outcome)
            resource = fetched
        incoming = self._appointment(resource, key, key=key)
        if event.timestamp is not None and incoming.sent_at is None:
            incoming = Incoming(incoming.source, key, incoming.command, event.timestamp)
        return await self.intake.answer(incoming, answers.as_operation_outcome)

    def _focus_url(self, focus: str | None) -> str | Receipt:
        """Where to fetch the focus: only under the configured FHIR base.

        Never any URL a notification names: that would let a sender make this service
        fetch anything.
        """
        base = (self.settings.fhir_base_url or "").rstrip("/")
        if not focus:
            return Receipt(ReceiptKind.BAD_INPUT, "notification-event.focus: missing")
        if not base:
            return Receipt(ReceiptKind.BAD_INPUT,
                           "id-only notification, but no FHIR base is configured "
                           "(MSR_INTAKE_FHIR_BASE_URL) to fetch the Appointment from")
        if not focus.startswith(("http://", "https://")):
            return f"{base}/{focus.lstrip('/')}"
        if not focus.startswith(f"{base}/"):
            return Receipt(ReceiptKind.BAD_INPUT,
                           "notification-event.focus: not under the configured FHIR base")
        return focus

    async def _fetch(self, focus: str | None) -> dict[str, Any] | Receipt:
        """The focus Appointment of an id-only notification, from the sender's FHIR base."""
        url = self._focus_url(focus)
        if isinstance(url, Receipt):
            return url
        headers = {"Accept": "application/fhir+json"}
        if self.settings.fhir_authorization is not None:
            headers["Authorization"] = self.settings.fhir_authorization.get_secret_value()
        try:
            async with aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as session, session.get(
                    url, headers=headers) as response:
                if response.status >= 500:
                    return Receipt(ReceiptKind.UNAVAILABLE,
                                   f"the FHIR server answered {response.status}; try again")
                if response.status != 200:
                    return Receipt(ReceiptKind.BAD_INPUT,
                                   f"notification-event.focus: the FHIR server answered "
                                   f"{response.status}")
                resource = _json(await response.read())
        except (aiohttp.ClientError, TimeoutError) as error:
            return Receipt(ReceiptKind.UNAVAILABLE,
                           f"cannot fetch the focus from the FHIR server: {type(error).__name__}")
        if not isinstance(resource, dict):
            return Receipt(ReceiptKind.BAD_INPUT, "the fetched focus is not a JSON resource")
        return resource

    # -- Cal.com and Calendly ----------------------------------------------------------------

    async def calcom(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """A Cal.com delivery; 401 unless signed with the configured secret."""
        secret = self.settings.calcom_secret
        if secret is None:
            return _error(503, "Cal.com intake is not configured (MSR_INTAKE_CALCOM_SECRET)")
        try:
            verify_calcom(secret.get_secret_value(), body, headers.get("x-cal-signature-256"))
        except SignatureError as error:
            return _error(401, str(error))
        return _pair(await self.intake.answer(calcom.translate(body, self._defaults),
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
        return _pair(await self.intake.answer(calendly.translate(body, self._defaults),
                                              answers.as_json))


def _would(command: Command) -> str:
    """What a command would do, in words for a dry run's answer."""
    session = getattr(command, "session_id", None)
    match command:
        case Book(start=start, booking=booking):
            how = "book" if booking is not None else "move (it lacks what a new booking needs)"
            return f"{how} session {session} at {start.isoformat()}"
        case Cancel():
            return f"cancel session {session}"
        case CheckIn() | Attended():
            return f"check in session {session}"
        case NoShow():
            return f"record the scheduler's no-show of session {session}"
        case Record(note=note):
            return f"record it ({note})"
        case _:
            return "be refused"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def _pair(answer: StoredAnswer) -> Answer:
    return answer.status, answer.answer


def _error(status: int, message: str) -> Answer:
    return status, json.dumps({"outcome": "refused", "message": message})


def build(application: Application,
          settings: IntakeSettings | None = None) -> StandardsIntake:
    """The standards intake over an application (its tables through the application)."""
    settings = settings or IntakeSettings()
    return StandardsIntake(Intake(application, future_skew=settings.future_skew), settings)
