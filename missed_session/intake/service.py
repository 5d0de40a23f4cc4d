"""The standards intake as one object: each format's request in, its answer out.

The MLLP listener and the `/hl7` route call this for HL7 v2 (the web formats have
`intake.web.WebIntake`); it parses, translates, executes through `Intake` and renders.
It holds no state of its own beyond its connections.
"""

from __future__ import annotations

from missed_session.application import Application
from missed_session.intake import answers, hl7v2
from missed_session.intake.commands import (
    Attended,
    Book,
    Cancel,
    CheckIn,
    Command,
    NoShow,
    Record,
    Refuse,
)
from missed_session.intake.dispatch import Intake, Receipt, ReceiptKind
from missed_session.intake.settings import IntakeSettings, NonProduction
from missed_session.store.intake import StoredAnswer

Answer = tuple[int, str]
"""An HTTP status and a body."""


class StandardsIntake:
    """HL7 v2 messages -> ACKs (FHIR, Cal.com and Calendly: `intake.web.WebIntake`)."""

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


def _pair(answer: StoredAnswer) -> Answer:
    return answer.status, answer.answer


def build(application: Application,
          settings: IntakeSettings | None = None) -> StandardsIntake:
    """The standards intake over an application (its tables through the application)."""
    settings = settings or IntakeSettings()
    return StandardsIntake(Intake(application, future_skew=settings.future_skew), settings)
