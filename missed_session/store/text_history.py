"""What the audit trail says about texts to a client, across all of their sessions.

Read-only: the `opted_out` and `message_sent` (text) events the workflows recorded, found
through each session's `scheduled` event, which names the client's pseudonymous ref. A text
whose delivery was uncertain (`outreach_uncertain`: the provider may have accepted it, or it
was stopped in flight; `outreach_failed` with the uncertain reason in trails written before
that event existed) counts as sent: the one-text-a-day rule must not send a second one.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

TEXT_HISTORY = """
SELECT
    coalesce(bool_or(e.event_type = 'opted_out'), false) AS opted_out,
    coalesce(bool_or((e.event_type IN ('message_sent', 'outreach_uncertain')
                      OR (e.event_type = 'outreach_failed' AND e.data->>'reason' = $4))
                     AND e.occurred_at >= $2 AND e.occurred_at < $3), false) AS texted
FROM audit_events e
WHERE e.event_type IN ('opted_out', 'message_sent', 'outreach_failed', 'outreach_uncertain')
  AND e.data->>'channel' = 'text'
  AND e.session_id IN (
      SELECT session_id FROM audit_events
      WHERE event_type = 'scheduled' AND data->>'client_ref' = $1)
"""


async def text_history(pool: asyncpg.Pool, client_ref: str, day_start: datetime,
                       day_end: datetime, uncertain_reason: str) -> tuple[bool, bool]:
    """(opted out ever, texted between day_start and day_end) for the client.

    A text audited as failed with `uncertain_reason` counts as texted.
    """
    row = await pool.fetchrow(TEXT_HISTORY, client_ref, day_start, day_end, uncertain_reason)
    assert row is not None  # an aggregate always returns a row
    return bool(row["opted_out"]), bool(row["texted"])
