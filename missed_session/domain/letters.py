"""Letters: the last rungs of the insurer's ladder, as pure rules.

When calls and messages have not reached a client, malpractice insurers' guidance for a
high-risk no-show is a first-class letter and then a certified one. A letter can be opened
by anyone in the household, so it says what a voicemail says and no more: that we have been
trying to reach the client, and the call-back number; no practice type, no clinician title,
no diagnosis, nothing asked of them but a call. It greets the client by first name, and is
addressed (window-envelope block) only when the directory holds a postal address; without
one it greets nobody by name, and the practice addresses it from its own records (a letter
with a name but no known address is one more paper with the name on it, for nothing).

Which letters a session sends (`letters_due`), their words (`compose`), where the PDF is
kept (`letter_file`) and what the practice is asked to do (`posting_task`) are decided
here; `missed_session.channels.letter` renders the PDF, `activities.letters` writes it, and
`workflows.letters` runs the step and records it (digest and file, never the text).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath

from pydantic import Field

from missed_session.domain.clients import PostalAddress
from missed_session.domain.messages import ensure_discreet
from missed_session.domain.models import LetterKind, Model, Outcome

PRINTABLE_ENCODING = "latin-1"
"""What the PDF's standard font can print: text outside it is never printed (mangled names
on a letter to a client are worse than no name)."""

UNREACHED = frozenset({Outcome.UNREACHABLE_ESCALATED, Outcome.UNREACHABLE_ESCALATION_BLOCKED})
"""Outreach ended without reaching the client: only then do letters follow the calls."""

__all__ = ["LetterKind", "LetterReport", "LetterRequest", "compose", "letter_file",
           "letters_due", "posting_task", "printable"]


class LetterRequest(Model):
    """What the letter activity needs; the address is read from the directory as of now."""

    session_id: str
    """Whose session (the file is kept under it)."""
    client_ref: str
    """Whose directory entry holds the address."""
    first_name: str
    """The booking's first name, used when the directory does not know the client."""
    number: int = Field(ge=1)
    """Which letter of the session (1, 2, ...)."""
    kind: LetterKind
    """First-class or certified."""
    dated: date
    """The letter's date, the client's local day (the workflow's clock, so a retry renders
    the same bytes)."""


class LetterReport(Model):
    """What the letter activity made: enough to find the file and prove it unchanged."""

    file: str
    """Where the PDF is, relative to the letters folder (`<session id>/letter-1-...pdf`)."""
    digest: str
    """SHA-256 of the PDF's bytes, hex."""
    addressed: bool
    """Whether it carries the client's name and postal address (else the practice addresses
    it)."""


@dataclass(frozen=True)
class Letter:
    """A letter's words, laid out by the renderer."""

    kind: LetterKind
    dated: date
    address: tuple[str, ...]
    """The window-envelope block (recipient and address), or empty."""
    greeting: str
    paragraphs: tuple[str, ...]
    closing: str
    sender: str
    notice: str
    """The small line at the foot: how it was posted (the certified one says so)."""


def letters_due(letters: tuple[LetterKind, ...], outcome: Outcome) -> tuple[LetterKind, ...]:
    """The protocol's letters, when outreach ended without reaching the client."""
    return letters if outcome in UNREACHED else ()


def printable(text: str) -> bool:
    """Whether the PDF's font prints `text` exactly."""
    try:
        text.encode(PRINTABLE_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def compose(kind: LetterKind, *, dated: date, first_name: str | None,
            address: PostalAddress | None, sender_name: str,
            callback_number: str) -> Letter:
    """The letter's words: concerned, non-identifying, asking nothing but a call.

    Greets by first name only with a postal address on file (and only a name the font
    prints exactly); refuses (`RevealingMessageError`) any text that reveals the practice.
    """
    block = address.block() if address is not None else ()
    if not all(printable(line) for line in block):
        block = ()
    name = first_name if block and first_name and printable(first_name) else None
    greeting = f"Dear {name}," if name else "Hello,"
    if kind is LetterKind.CERTIFIED:
        opening = ("We have tried to reach you by phone and by letter, and have not been able "
                   "to get through. We are sending this letter by certified mail to be sure "
                   "it reaches you.")
        notice = "Sent by certified mail."
    else:
        opening = ("We have been trying to reach you by phone and have not been able to get "
                   "through, and we wanted to check that you are okay.")
        notice = "Sent by first-class mail."
    paragraphs = (
        opening,
        f"We would like to hear from you. Please call us at {callback_number} when it suits "
        "you.",
        "If you have been in touch with us since this letter was written, please disregard it.",
    )
    for text in (greeting, *paragraphs, sender_name):
        ensure_discreet(text)
    return Letter(kind=kind, dated=dated, address=block, greeting=greeting,
                  paragraphs=paragraphs, closing="With best wishes,", sender=sender_name,
                  notice=notice)


def letter_file(session_id: str, number: int, kind: LetterKind) -> PurePosixPath:
    """Where a session's letter is kept, relative to the letters folder.

    A session id is letters, digits, `-`, `_` and `.` (never `/`), and `..` alone is
    refused below, so the path stays inside the folder.
    """
    if session_id in {".", ".."} or "/" in session_id or "\\" in session_id:
        msg = f"session id {session_id!r} cannot name a folder"
        raise ValueError(msg)
    return PurePosixPath(session_id) / f"letter-{number}-{kind.value}.pdf"


def posting_task(kind: LetterKind, report: LetterReport) -> str:
    """What the practice is asked to do with a prepared letter (a task notice's title)."""
    how = "by certified mail" if kind is LetterKind.CERTIFIED else "first class"
    address = ("" if report.addressed
               else "; no postal address on file: address it from the practice's records")
    return (f"Post the prepared letter {how} (file {report.file}{address}), then resolve "
            "this task to confirm it was posted")
