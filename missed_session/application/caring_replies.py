"""A client's text with no open session: a reply to their running caring series, if any.

Inbound texts go to the client's open sessions first (`application.inbound`). A client in a
caring-contacts series usually has none: their reply is then handed to each series running
for a client who uses the number (found from the series' trails in PostgreSQL), whose
workflow records it and gives the therapist a notice. Sent under the text's update id, so a
provider's redelivery reaches each series once.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from temporalio.client import Client

from missed_session.application.kept_texts import update_id
from missed_session.application.results import Result, ResultKind
from missed_session.application.updates import send_update
from missed_session.domain.models import TextReply
from missed_session.store.caring import running_series
from missed_session.store.clients import ClientDirectory

UPDATE = "client_replied"
"""The series workflow's update for a reply."""


async def reply_to_series(client: Client, pool: asyncpg.Pool, *, phone: str, body: str,
                          message_id: str, wait: timedelta) -> Result | None:
    """Deliver `body` to the running series of the clients using `phone`; None if none."""
    refs = await ClientDirectory(pool).clients_using(phone)
    series_ids = await running_series(pool, refs)
    if not series_ids:
        return None
    reply = TextReply(body=body)
    took = []
    for series_id in series_ids:
        sent = await send_update(client, series_id, UPDATE, reply,
                                 update_id=update_id(message_id), wait=wait)
        if sent.took_it:
            took.append(series_id)
    if not took:
        return Result(ResultKind.UNAVAILABLE,
                      "no caring series took the reply (no worker answered in time)")
    return Result(ResultKind.APPLIED,
                  f"reply delivered to {len(took)} caring series; the therapist has a notice",
                  data={"series": took})
