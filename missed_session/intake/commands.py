"""What an incoming scheduler message asks the service to do, independent of its format.

A translator turns one message into one command; the dispatcher decides what the command
does given what is already known (a duplicate, an older message, a cancel that came before
its booking). Commands carry no raw payload: only what the session needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from missed_session.domain.models import SessionBooking


class Source(StrEnum):
    """Which standard or scheduler a message came through; part of its delivery key."""

    FHIR = "fhir"
    HL7 = "hl7"
    CALCOM = "calcom"
    CALENDLY = "calendly"


@dataclass(frozen=True)
class Book:
    """The scheduler holds this session at `start`.

    Start it if absent, move it if its start changed, and leave it alone if it already
    starts then. One command for new bookings, reschedules and modifications, because
    schedulers resend the whole appointment on every change and deliver them in any order.
    """

    session_id: str
    """The session the message is about."""
    start: datetime
    """The start the scheduler now holds (an instant, with its offset)."""
    booking: SessionBooking | None
    """The full booking, when the message carries all a booking needs; None otherwise."""
    incomplete: str = ""
    """Why `booking` is None (e.g. no phone number), to refuse a session that must start."""
    reason: str = ""
    """What the scheduler called the change, for the audit trail (no clinical detail)."""
    by_ref: dict[str, object] | None = None
    """When only the client's contact points are missing: the booking naming the client by
    ref alone, for the client directory to complete (as every entry point does)."""


@dataclass(frozen=True)
class Cancel:
    """The session will not take place."""

    session_id: str
    """The session."""
    reason: str = ""
    """Why, for the audit trail (no clinical detail)."""
    entered_in_error: bool = False
    """The booking never should have existed (FHIR entered-in-error, HL7 S17 deletion)."""


@dataclass(frozen=True)
class CheckIn:
    """The client arrived or joined."""

    session_id: str
    """The session."""
    at: datetime | None = None
    """When, if the scheduler said."""


@dataclass(frozen=True)
class NoShow:
    """The scheduler declares the client a no-show now (no grace period left to wait)."""

    session_id: str
    """The session."""
    at: datetime | None = None
    """When the scheduler recorded it, if it said."""


@dataclass(frozen=True)
class Attended:
    """The session took place (FHIR fulfilled): the client came."""

    session_id: str
    """The session."""


@dataclass(frozen=True)
class Record:
    """Nothing to do but record that the message arrived.

    For example a proposed appointment, a host no-show, a handshake.
    """

    note: str
    """What the message said, in words safe to store and to show the sender."""
    session_id: str | None = None
    """The session it concerns, if any."""


@dataclass(frozen=True)
class Refuse:
    """The message cannot be applied as it stands; the sender is told why."""

    reason: str
    """What is wrong, naming the field (never a value: values may be health data)."""
    session_id: str | None = None
    """The session it concerns, if it could be read."""
    malformed: bool = False
    """True when the message could not be read at all (HL7 AR rather than AE)."""


Command = Book | Cancel | CheckIn | NoShow | Attended | Record | Refuse
"""Everything a translator can ask for."""


@dataclass(frozen=True)
class Incoming:
    """One translated message: its delivery identity, its time and its command."""

    source: Source
    """Where it came from."""
    key: str
    """Delivery identity: the same message delivered twice has the same key (MSH-10, the
    body's hash, a notification's event number)."""
    command: Command
    """What it asks for."""
    sent_at: datetime | None = None
    """When the sender says it made the message (orders messages for one session)."""
    previous_ids: tuple[str, ...] = ()
    """Earlier scheduler ids of the same session (a Calendly or Cal.com reschedule makes a
    new id), resolved to the session through the alias table."""
    feed: str = ""
    """The sender feed whose clock `sent_at` is on (HL7: sending application and facility);
    empty means the source itself. Sender times are only compared within one feed."""
    sent_at_field: str = ""
    """Where `sent_at` came from (MSH-7, meta.lastUpdated, createdAt), to name it in a
    refusal."""

    @property
    def feed_name(self) -> str:
        """The feed, defaulting to the source."""
        return self.feed or self.source.value

