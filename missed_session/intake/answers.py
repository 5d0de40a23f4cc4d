"""Rendering an intake outcome in each sender's terms: JSON, OperationOutcome, HL7 ACK."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from missed_session.intake import ack, fhir
from missed_session.intake.ack import AckCode
from missed_session.intake.commands import Incoming
from missed_session.intake.dispatch import Receipt, ReceiptKind
from missed_session.intake.hl7v2 import Header

HTTP_STATUS = {
    ReceiptKind.APPLIED: 200,
    ReceiptKind.UNCHANGED: 200,
    ReceiptKind.RECORDED: 200,
    ReceiptKind.REFUSED: 409,
    ReceiptKind.NOT_FOUND: 404,
    ReceiptKind.BAD_INPUT: 422,
    ReceiptKind.MALFORMED: 400,
    ReceiptKind.UNAVAILABLE: 503,
}

ACK_CODE = {
    ReceiptKind.APPLIED: AckCode.ACCEPT,
    ReceiptKind.UNCHANGED: AckCode.ACCEPT,
    ReceiptKind.RECORDED: AckCode.ACCEPT,
    ReceiptKind.REFUSED: AckCode.ERROR,
    ReceiptKind.NOT_FOUND: AckCode.ERROR,
    ReceiptKind.BAD_INPUT: AckCode.ERROR,
    ReceiptKind.MALFORMED: AckCode.REJECT,
    ReceiptKind.UNAVAILABLE: AckCode.REJECT,
}
"""AR also for an unavailable service: original mode's "reject, send again later"."""

FHIR_ISSUE = {
    ReceiptKind.APPLIED: ("information", "informational"),
    ReceiptKind.UNCHANGED: ("information", "duplicate"),
    ReceiptKind.RECORDED: ("information", "informational"),
    ReceiptKind.REFUSED: ("error", "conflict"),
    ReceiptKind.NOT_FOUND: ("error", "not-found"),
    ReceiptKind.BAD_INPUT: ("error", "invalid"),
    ReceiptKind.MALFORMED: ("error", "structure"),
    ReceiptKind.UNAVAILABLE: ("error", "transient"),
}

HL7_ERROR_CODE = {
    ReceiptKind.REFUSED: "207",
    ReceiptKind.NOT_FOUND: "204",
    ReceiptKind.BAD_INPUT: "102",
    ReceiptKind.UNAVAILABLE: "207",
}
"""HL7 table 0357: 204 unknown key identifier, 102 data type error, 207 application
internal error (translators give their own code when they refuse)."""


def status(outcome: Receipt) -> int:
    """The HTTP status for an outcome (201 when the message started the session)."""
    return 201 if outcome.started else HTTP_STATUS[outcome.kind]


def ack_code(outcome: Receipt) -> AckCode:
    """AA, AE or AR for an outcome (AR also for a readable message refused as unstorable)."""
    return AckCode.REJECT if outcome.reject else ACK_CODE[outcome.kind]


def severity(outcome: Receipt, text: str) -> str:
    """The ERR severity an AA carries.

    W when the message was recorded and not applied, I when its text is longer than MSA-3
    holds, none otherwise.
    """
    if outcome.kind is ReceiptKind.RECORDED or outcome.warning:
        return "W"
    return "I" if len(text) > ack.MSA_TEXT_LIMIT else ""


def as_json(incoming: Incoming, outcome: Receipt) -> tuple[int, str]:
    """A webhook's answer: the outcome, one line, the session."""
    body = {"outcome": outcome.kind.value, "message": outcome.message,
            "session_id": outcome.session_id}
    return status(outcome), json.dumps(body)


def as_operation_outcome(incoming: Incoming, outcome: Receipt) -> tuple[int, str]:
    """A FHIR answer: an OperationOutcome whose one issue says what was done."""
    severity, code = FHIR_ISSUE[outcome.kind]
    return status(outcome), json.dumps(fhir.operation_outcome(severity, code, outcome.message))


def as_ack(header: Header, error_code: str = "",
           now: Callable[[], datetime] = lambda: datetime.now(UTC)
           ) -> Callable[[Incoming, Receipt], tuple[int, str]]:
    """An HL7 answer for a message with this header.

    The ACK, or nothing (204) when the sender's MSH-15/16 declines this kind of ACK.
    """

    def render(incoming: Incoming, outcome: Receipt) -> tuple[int, str]:
        code = ack_code(outcome)
        if not ack.wanted(header, code):
            return 204, ""
        refusal_code = error_code or HL7_ERROR_CODE.get(outcome.kind, "207")
        if outcome.reject and not error_code:
            refusal_code = "102"
        text = ack.build(header, code, outcome.message, control_id=uuid.uuid4().hex[:20],
                         now=now(), error_code=refusal_code,
                         severity=severity(outcome, ack.escape(outcome.message, header))
                         if code is AckCode.ACCEPT else "")
        return (503 if outcome.kind is ReceiptKind.UNAVAILABLE else 200), text

    return render
