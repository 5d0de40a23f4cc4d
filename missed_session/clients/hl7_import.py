"""A client's directory entry from HL7 v2 PID and NK1 segments (pure: text in, model out).

PID-3 (first identifier) is the client ref, PID-5.2 the first name, PID-13/14 the phone
numbers and email (XTN: use code, equipment type, E.164 in component 1 or country/area/
local in 5-7), NK1 the emergency contacts. HL7 v2 carries no time zone: the caller says.
Every problem names the segment and field, never the value.
"""

from __future__ import annotations

from typing import Any

import hl7
from pydantic import ValidationError

from missed_session.domain.clients import ClientRecord

USES = {"PRN": "home", "ORN": "home", "WPN": "work", "NET": "home"}
"""XTN-2 (telecommunication use code) to the directory's use; CP equipment means mobile."""


class HL7ImportError(ValueError):
    """Segments that do not make a valid directory entry; the message names the field."""


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _component(field: Any, repetition: int, component: int) -> str:
    try:
        return _text(field(repetition)(component))
    except (IndexError, KeyError, TypeError):
        return ""


def _repetitions(segment: Any, index: int) -> int:
    try:
        return len(segment(index))
    except (IndexError, KeyError):
        return 0


def _phone(field: Any, repetition: int) -> str:
    whole = _component(field, repetition, 1)
    if whole.startswith("+"):
        return whole.replace(" ", "").replace("-", "")
    parts = [_component(field, repetition, n) for n in (5, 6, 7)]
    if parts[2]:
        return "+" + "".join(parts).replace(" ", "").replace("-", "")
    return whole


def client_from_hl7(message: str, *, time_zone: str) -> ClientRecord:
    """The directory entry a message's PID (and NK1) segments describe."""
    try:
        parsed = hl7.parse(message.replace("\n", "\r"))
        pid = parsed.segment("PID")
    except (KeyError, IndexError, ValueError):
        raise HL7ImportError("PID: the message has no PID segment") from None
    ref = _component(pid(3), 1, 1)
    first_name = _component(pid(5), 1, 2)
    phones: list[dict[str, Any]] = []
    emails: list[dict[str, Any]] = []
    for index, default_use in ((13, "home"), (14, "work")):
        for repetition in range(1, _repetitions(pid, index) + 1):
            field = pid(index)
            code = _component(field, repetition, 2)
            equipment = _component(field, repetition, 3)
            if code == "NET" or equipment == "Internet":
                emails.append({"address": _component(field, repetition, 4),
                               "use": USES.get(code, default_use)})
            elif _phone(field, repetition):
                use = "mobile" if equipment == "CP" else USES.get(code, default_use)
                phones.append({"number": _phone(field, repetition), "use": use})
    contacts = []
    try:
        kin = parsed.segments("NK1")
    except KeyError:
        kin = []
    for segment in kin:
        contacts.append({"name": _component(segment(2), 1, 2) or _component(segment(2), 1, 1),
                         "relationship": (_component(segment(3), 1, 1)
                                          or _text(segment(3)))[:50],
                         "phone": _phone(segment(5), 1)})
    try:
        return ClientRecord.model_validate({
            "ref": ref, "first_name": first_name, "time_zone": time_zone,
            "phones": phones, "emails": emails, "emergency_contacts": contacts,
        })
    except ValidationError as error:
        first = error.errors()[0]
        raise HL7ImportError(_where(first["loc"]) + ": " + first["msg"].removeprefix(
            "Value error, ")) from None


def _where(location: tuple[Any, ...]) -> str:
    fields = {"ref": "PID-3", "first_name": "PID-5.2", "time_zone": "time_zone",
              "phones": "PID-13/14", "emails": "PID-13/14", "emergency_contacts": "NK1"}
    if not location:
        return "PID/NK1"
    head = fields.get(str(location[0]), str(location[0]))
    if head == "NK1" and len(location) > 1:
        return f"NK1 #{int(location[1]) + 1}" + (f" {location[2]}" if len(location) > 2 else "")
    return head
