"""Which session of the same person is in outreach now, read from the audit trail.

A session is in outreach from its `grace_period_expired` until its `closed`; a session that
joined another's ladder (`joined_outreach`) does not lead one. The same person is the same
client ref, or a client ref whose directory entry lists the same phone number (two refs
for one person, or one phone shared by a household: either way one phone rings). The
attendance projection names each session's client and is open (no outcome) until it
closes; it is written in the statement that appends the event, so it never lags the trail.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

RUNNING_LADDER = """
WITH person AS (
    SELECT $2::text AS client_ref
    UNION
    SELECT client_ref FROM client_contact_points
    WHERE kind = 'phone' AND value = $3::text
)
SELECT a.session_id, expired.occurred_at AS began,
       (SELECT max(occurred_at) FROM audit_events l WHERE l.session_id = a.session_id)
           AS last_event_at
FROM projection_attendance a
JOIN audit_events expired
  ON expired.session_id = a.session_id AND expired.event_type = 'grace_period_expired'
WHERE a.client_ref IN (SELECT client_ref FROM person)
  AND a.outcome IS NULL
  AND a.session_id <> $1
  AND (expired.occurred_at < $4 OR (expired.occurred_at = $4 AND a.session_id < $1))
  AND NOT EXISTS (SELECT 1 FROM audit_events j
                  WHERE j.session_id = a.session_id
                    AND j.event_type IN ('joined_outreach', 'closed'))
ORDER BY expired.occurred_at, a.session_id
LIMIT 1
"""


async def running_ladder(pool: asyncpg.Pool, *, session_id: str, client_ref: str,
                         phone: str | None, no_show_at: datetime) -> tuple[str, datetime] | None:
    """(the leading session, its trail's latest event time), or None when none runs.

    Only a ladder whose no-show came before `no_show_at` (ties: the smaller session id)
    leads, so two sessions never wait for each other.
    """
    row = await pool.fetchrow(RUNNING_LADDER, session_id, client_ref, phone, no_show_at)
    if row is None:
        return None
    return str(row["session_id"]), row["last_event_at"]
