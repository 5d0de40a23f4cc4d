"""HL7 v2 acknowledgments, and whether the sender wants one at all (MSH-15/16).

AA when applied, AE with the reason when refused, AR when the message cannot be processed.

Built here rather than with `hl7.Message.create_ack`, because an AR must be answerable for
a message whose MSH could not be parsed, and because the ACK for a duplicate is the stored
first answer, byte for byte, so its control id and time must be chosen by the caller.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from missed_session.intake.hl7v2 import Header

MSA_TEXT_LIMIT = 80
"""MSA-3 is 80 characters in 2.2 to 2.4; longer reasons go in full into ERR."""
ACCEPTED = "0"
"""HL7 table 0357: message accepted (the code of an ERR that only informs or warns)."""


class AckCode(StrEnum):
    """HL7 table 0008, original mode."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


def wanted(header: Header, code: AckCode) -> bool:
    """Whether the sender asked for this ACK.

    MSH-16 (application ACK type) when given, else MSH-15 (accept ACK type): AL or empty
    always, NE never, ER only for an error, SU only for success.
    """
    condition = (header.application_ack_type or header.accept_ack_type).upper()
    if condition == "NE":
        return False
    if condition == "ER":
        return code != AckCode.ACCEPT
    if condition == "SU":
        return code == AckCode.ACCEPT
    return True


def escape(text: str, header: Header) -> str:
    """Escape the message's delimiters in free text (HL7 escape sequences), drop breaks."""
    field = header.field_separator or "|"
    separators = (header.encoding + "^~\\&")[:4]
    component, repetition, escape_char, subcomponent = (
        separators[0], separators[1], separators[2], separators[3])
    out = []
    for char in " ".join(text.split()):
        if char == escape_char:
            out.append(f"{escape_char}E{escape_char}")
        elif char == field:
            out.append(f"{escape_char}F{escape_char}")
        elif char == component:
            out.append(f"{escape_char}S{escape_char}")
        elif char == repetition:
            out.append(f"{escape_char}R{escape_char}")
        elif char == subcomponent:
            out.append(f"{escape_char}T{escape_char}")
        else:
            out.append(char)
    return "".join(out)


def short(text: str, limit: int = MSA_TEXT_LIMIT) -> str:
    """Text for a field of `limit` characters: whole words, '...' when cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 4]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + " ..."


def build(header: Header, code: AckCode, text: str, *, control_id: str, now: datetime,
          error_code: str = "", severity: str = "") -> str:
    """The ACK message (segments separated by CR, no MLLP framing).

    MSA-3 holds the text cut at a word to 80 characters; the whole text is in an ERR
    segment, which every AE and AR has, and an AA too when `severity` is given (W: the
    message was recorded, not applied; I: information too long for MSA-3). The ERR segment
    follows the version: ERR-1 (code and location) before 2.5; ERR-3 (HL7 error code),
    ERR-4 (severity) and ERR-8 (user message) from 2.5 on.
    """
    f = header.field_separator or "|"
    version = header.version or "2.5"
    msh = f.join([
        "MSH", header.encoding or "^~\\&", header.receiving_application,
        header.receiving_facility, header.sending_application, header.sending_facility,
        now.strftime("%Y%m%d%H%M%S%z"), "",
        _ack_type(header), control_id, header.processing_id or "P", version,
    ])
    message = escape(text, header)
    segments = [msh, f.join(["MSA", code.value, header.control_id, short(message)])]
    if code != AckCode.ACCEPT or severity:
        number = (error_code or "207") if code != AckCode.ACCEPT else ACCEPTED
        level = "E" if code != AckCode.ACCEPT else severity
        component = (header.encoding or "^")[0]
        sub = (header.encoding + "^~\\&")[3]
        if _before_2_5(version):
            segments.append(f.join(["ERR", f"{component * 3}{number}{sub}{message}"
                                           f"{sub}HL70357"]))
        else:
            segments.append(f.join([
                "ERR", "", "", f"{number}{component}{message}{component}HL70357", level,
                "", "", "", message]))
    return "\r".join(segments) + "\r"


def _ack_type(header: Header) -> str:
    component = (header.encoding or "^")[0]
    if _before_2_5(header.version or "2.5") or not header.trigger:
        return f"ACK{component}{header.trigger}" if header.trigger else "ACK"
    return f"ACK{component}{header.trigger}{component}ACK"


def _before_2_5(version: str) -> bool:
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) < (2, 5)
