"""A call's final status, as the provider's status callback reports it.

Twilio posts it to the API when a call the Twilio channel placed ends; it is recorded in
the delivery ledger by the call's SID, where the outreach step waiting on that call reads
it (and goes on polling Twilio when it never comes). Only the status and the
answering-machine verdict are kept: the callback's numbers are neither stored nor logged.
"""

from __future__ import annotations

import re

import asyncpg

from missed_session.application.results import Result, ResultKind, bad_input
from missed_session.application.service import Application, UnavailableError
from missed_session.channels.ledger import STORE_UNREACHABLE, DeliveryLedger, ProviderReport
from missed_session.channels.twilio import FINAL_STATUSES

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
"""A Twilio Call SID."""
CALL_STATUSES = frozenset({
    "queued", "initiated", "ringing", "in-progress", "completed", "busy", "failed",
    "no-answer", "canceled",
})
"""Every CallStatus Twilio sends."""
VERDICT = re.compile(r"[a-z_]{1,40}")
"""An AnsweredBy value (`human`, `machine_end_beep`, `unknown`, ...; new ones kept as sent)."""


STORE_ERRORS: tuple[type[BaseException], ...] = (
    UnavailableError, asyncpg.PostgresError, *STORE_UNREACHABLE,
)


async def record_call_status(app: Application, call_sid: str, status: str,
                             answered_by: str | None) -> Result:
    """Record the final status of the call `call_sid`; a status short of final is ignored."""
    problem = _problem(call_sid, status, answered_by)
    if problem is not None:
        return bad_input(problem)
    if status not in FINAL_STATUSES:  # the only ones the waiting step reads
        return Result(ResultKind.APPLIED, "the call is not over: nothing recorded")
    try:
        ledger = DeliveryLedger(await app.pool())
        recorded = await ledger.report(call_sid, ProviderReport(status, answered_by))
    except STORE_ERRORS as error:
        return Result(ResultKind.UNAVAILABLE,
                      f"the call's status was not recorded ({type(error).__name__})")
    if not recorded:
        return Result(ResultKind.APPLIED, "the call's final status was already recorded")
    return Result(ResultKind.APPLIED, "the call's final status is recorded")


def _problem(call_sid: str, status: str, answered_by: str | None) -> str | None:
    """The first field of the callback that is not what Twilio sends (its value unsaid)."""
    if CALL_SID.fullmatch(call_sid) is None:
        return "CallSid: not a Twilio call SID"
    if status not in CALL_STATUSES:
        return "CallStatus: not a Twilio call status"
    if answered_by is not None and VERDICT.fullmatch(answered_by) is None:
        return "AnsweredBy: not an answering-machine verdict"
    return None
