"""The scheduling system's and the operators' command line.

`schedule` starts a session's workflow; `check-in`, `cancel`, `reschedule`, `responded` and
`text-reply` send it the news; `mark-safe`, `escalate-now`, `stand-down` and `add-note`
record a clinician's decision (refused with the workflow's reason when it cannot apply);
`status` asks it where it is; `audit` reads its trail from PostgreSQL; `new-key` makes a
payload encryption key.

Exit codes: 0 done (started, applied, already scheduled); 1 a server could not be reached
or the session is not there; 2 bad input, or a request the session refused (nothing
changed). The commands live in `missed_session.cli` over the application layer
(`missed_session.application`); this file is the entry point.
"""

from __future__ import annotations

from missed_session.cli.main import exit_with, main
from missed_session.cli.render import BAD_INPUT, FAILED, REFUSED

__all__ = ["BAD_INPUT", "FAILED", "REFUSED", "main"]

if __name__ == "__main__":
    exit_with(main())
