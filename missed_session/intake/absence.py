"""The command for a therapist-absent signal: a host no-show, in any format.

A `Record` to anything that does not know it, so an executor that predates it records the
message rather than failing; the web intake's executor (`web.WebDispatch`) carries it out
through `application.therapist_absent`: the session's client outreach stands down and the
practice is told.
"""

from __future__ import annotations

from dataclasses import dataclass

from missed_session.intake.commands import Record


@dataclass(frozen=True)
class TherapistAbsent(Record):
    """The scheduler says the therapist (host, practitioner) did not attend the session.

    `note` says how the scheduler put it (safe to store: no names, no addresses).
    """
