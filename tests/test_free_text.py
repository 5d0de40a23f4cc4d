"""Free text that PostgreSQL can store and people can read: refused at intake otherwise.

A NUL in a first name used to be accepted at booking; every later message then failed and
the session closed `unreachable_escalation_blocked`; a NUL in a clinician's note made the
audit write fail forever. Now every free-text field refuses such characters, naming itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pydantic
import pytest

from missed_session.domain.models import (
    Cancellation,
    ClientResponse,
    ClinicianDecision,
    EmergencyContact,
    Reschedule,
    TextReply,
)
from tests.support.factories import booking

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
BAD = ["\x00", "\x07", "\x1b[2J", "\x7f", "\x85", "\ud800", "\u202e"]
"""NUL, BEL, an escape sequence, DEL, a C1 control, a lone surrogate, a bidi override."""


def _client(**fields: object) -> dict[str, object]:
    client = booking().client.model_dump(mode="json")
    client.update(fields)
    return client


CASES = [
    ("first_name", lambda text: booking().model_validate(
        {**booking().model_dump(mode="json"), "client": _client(first_name=f"Ro{text}bin")})),
    ("name", lambda text: EmergencyContact(name=f"Sam{text}", phone="+15555550101")),
    ("reason", lambda text: Cancellation(reason=f"ill{text}")),
    ("reason", lambda text: Reschedule(start=START, reason=f"moved{text}")),
    ("note", lambda text: ClientResponse(channel="call", note=f"called{text}back")),
    ("responder", lambda text: ClientResponse(channel="call", responder=f"mother{text}")),
    ("body", lambda text: TextReply(body=f"ok{text}")),
    ("reason", lambda text: ClinicianDecision(clinician_id="t-ana", reason=f"safe{text}")),
    ("legal_basis", lambda text: ClinicianDecision(legal_basis=f"duty{text}")),
    ("clinician_id", lambda text: ClinicianDecision(clinician_id=f"t{text}")),
]


@pytest.mark.parametrize("bad", BAD, ids=[f"U+{ord(c[0]):04X}" for c in BAD])
@pytest.mark.parametrize(("field", "build"), CASES, ids=[f"{c[0]}-{i}" for i, c in
                                                          enumerate(CASES)])
def test_control_characters_are_refused_naming_the_field(
    field: str, build: Callable[[str], object], bad: str,
) -> None:
    with pytest.raises(pydantic.ValidationError) as error:
        build(bad)
    first = error.value.errors()[0]
    assert first["loc"][-1] == field
    if bad != "\ud800":  # pydantic refuses a lone surrogate itself, in its own words
        assert f"U+{ord(bad[0]):04X}" in first["msg"]


def test_newlines_and_tabs_are_kept_in_multiline_text() -> None:
    note = "Called back.\n\tSounded well.\r\nWill come Thursday. Zoë 東京 😀"
    assert ClientResponse(channel="call", note=note).note == note
    assert TextReply(body="yes\nthanks").body == "yes\nthanks"


def test_a_name_is_one_line() -> None:
    with pytest.raises(pydantic.ValidationError, match="first_name"):
        booking().model_validate({**booking().model_dump(mode="json"),
                                  "client": _client(first_name="Ro\nbin")})
    assert EmergencyContact(name="Sam O'Neil-Zoë", phone="+15555550101").name
