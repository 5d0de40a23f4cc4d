"""The application layer: the use cases every entry point calls (contract C).

`Application` holds them with their connections; each returns a `Result` whose `kind`
(started, already_scheduled, applied, refused, not_found, bad_input, unavailable) an entry
point maps to an exit code, an HTTP status or an HL7 ACK code. Entry points parse and
render; validation, practice-file resolution and the translation of workflow answers live
here.
"""

from missed_session.application.bookings import BadBookingError, prepare_booking
from missed_session.application.results import Problem, Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.application.sessions import Message, Sessions

__all__ = [
    "Application",
    "BadBookingError",
    "Message",
    "Problem",
    "Result",
    "ResultKind",
    "Sessions",
    "UnavailableError",
    "prepare_booking",
]
