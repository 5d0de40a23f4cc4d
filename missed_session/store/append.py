"""The one way an event enters a trail: `record`.

Every writer goes through it: the session, notice and caring workflows (through
`activities/audit.py`), the benchmark and the tests. A batch is the next consecutive events
of one trail (a session's, or a notice's or a caring series' under its own stream id).

Idempotent on `(session_id, sequence)`: a retry finds the row its first try wrote (the same
type and data, at any time: a retried workflow task builds the event again with a later
`workflow.now()`) and gets it back; the first write stands. Another event at the place is a
workflow task that wrote rows and did not complete, and whose retry took another branch:
those rows are kept and marked superseded by a `trail_superseded` row after the last of
them, and the batch follows the marker. A closed trail is final: there it is a conflict.

Each event is one statement, its own transaction (the `closed` event with its attendance
row, and a supersession, share one), one round trip: it reads the parent row's hash
(`sequence - 1`; trails are numbered without gaps), computes the row's hash in the database
from it and the canonical encoding cut around it (`chain.canonical_parts`), inserts the row
and folds it into the projections. No lock is needed: rows never change once written, so
the parent's hash cannot move; an event whose parent is not committed yet finds no parent
and is refused, to be retried; the primary key lets only one row take each place, so two
rows never link to one parent.

Why the projections are folded in the append's own statement, not by a follower (issue 21
asked for a follower; correctness decided against it):

- There is no position a follower could track cheaply and correctly. Trails are numbered
  per session; `recorded_at` is the insert's clock, not its commit order, so a follower
  reading "after the last time I saw" skips a row whose transaction committed late. A
  gap-free, commit-ordered position (eventsourcing's notification id) needs one more
  column and every append serialised behind a table lock, on the path every event of
  every session takes.
- The fold costs no round trip here: the append is one statement with or without it
  (`projections.net` gives its parameters; the other 33 event types carry none).
- Readers take the projections as current, and nothing would tell them otherwise: the
  integrity alarm reads a stopped session's therapist and client from
  `projection_attendance` the moment it finds the session (behind a follower, a session
  that stopped within the lag would alert therapist '' about client 'unknown'); the
  compliance reviewer reads the tables as equal to the trail, which `rebuild` must
  reproduce at any moment; the purge and the supersession rewrite a session's rows in
  the same transaction as the trail they change.

So the fold stays in the statement that writes the row, gated on the row being written (a
retry folds nothing again), and `projections.fold_sql` is spliced here and nowhere else.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from missed_session.domain.events import TrailSuperseded, live, new_event
from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.store import attendance as attendance_rows
from missed_session.store import projections, rows
from missed_session.store.attendance import Attendance
from missed_session.store.chain import GENESIS, canonical_event, canonical_parts
from missed_session.store.connection import Connection


class AuditConflictError(RuntimeError):
    """A different event already holds this place in a closed trail.

    Another type or other data: a non-deterministic workflow change, a second writer, or a
    retried workflow task that took another branch after the trail closed. Never retried:
    the trail must not be papered over. (The same event at a later time is no conflict.)
    """


class AuditParentMissingError(RuntimeError):
    """The event's predecessor in the trail is not recorded (yet).

    Events are appended in sequence order, each linked to the one before it; an event that
    overtook its predecessor (two activities in flight) succeeds when retried after it.
    """


@dataclass(frozen=True)
class Recorded:
    """What a write left in its trail (`record`)."""

    events: tuple[AuditEvent, ...]
    """The events as recorded, in order, at the places they hold: the next one follows."""
    new: tuple[AuditEvent, ...]
    """Those this write put there (the others were there already)."""
    expired_at: datetime | None = None
    """Asked for (`record(expiry=True)`): when the trail's first `grace_period_expired`
    happened, read by the statement that appended the batch's first event (no round trip
    of its own); None when the trail has none, or when not asked."""


async def record(connection: Connection, batch: Sequence[AuditEvent], *,
                 attendance: Attendance | None = None, expiry: bool = False) -> Recorded:
    """Append the trail's next events (consecutive, one trail); see the module's docstring.

    With `attendance`, the batch is the session's `closed` event, and its attendance row is
    written with it, in one transaction: together or neither. With `expiry`, the first
    append also reads when the session's grace period expired (`Recorded.expired_at`: the
    first-outreach metric's start, without a read of the trail after it).
    Raises `AuditConflictError` when another event holds a place of a closed trail, and
    `AuditParentMissingError` when the event before the batch is not recorded yet.
    """
    if attendance is None:
        return await _record(connection, batch, expiry=expiry)
    async with connection.transaction():
        recorded = await _record(connection, batch, expiry=expiry)
        await attendance_rows.insert(connection, recorded.events[-1], attendance)
        return recorded


async def _record(connection: Connection, batch: Sequence[AuditEvent], *,
                  expiry: bool) -> Recorded:
    """Each event in turn; from the first whose place another holds, the supersession."""
    recorded: list[AuditEvent] = []
    new: list[AuditEvent] = []
    expired_at: datetime | None = None
    for index, event in enumerate(batch):
        row, found = await _insert(connection, event, expiry=expiry and index == 0)
        if index == 0:
            expired_at = found
        if row is None:
            recorded.append(event)
            new.append(event)
        elif _same(row, event):
            recorded.append(rows.event(row))
        else:
            async with connection.transaction():
                placed = await _supersede(connection, batch[index:])
            return Recorded(events=(*recorded, *placed.events), new=(*new, *placed.new),
                            expired_at=expired_at)
    return Recorded(events=tuple(recorded), new=tuple(new), expired_at=expired_at)


_APPEND = (
    # The parent row (not locked: it never changes, and only a committed one is found). A
    # parent without a hash (written outside the store) links like the first row ($8,
    # `GENESIS`), as appends always have.
    "WITH parent AS (SELECT hash FROM audit_events WHERE session_id = $1::text"
    " AND sequence = $2::integer - 1),"
    " link AS (SELECT coalesce(hash, $8::text) AS prev_hash FROM parent"
    " UNION ALL SELECT $8::text WHERE $2::integer = 1),"
    # No parent, no row: the caller tells a missing parent from a retry by `linked`.
    " ins AS (INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
    " prev_hash, hash) SELECT $1::text, $2::integer, $3::text, $4::timestamptz, $5::jsonb,"
    " prev_hash, encode(sha256($6::bytea || convert_to(prev_hash, 'UTF8') || $7::bytea),"
    " 'hex') FROM link ON CONFLICT (session_id, sequence) DO NOTHING RETURNING 1)"
)
_APPEND_RESULT = (
    " SELECT (SELECT count(*) FROM ins) AS written, (SELECT count(*) FROM link) AS linked"
)
_EXPIRED_AT = (
    # The trail's first expiry, by the primary key's range over the session's rows. The
    # statement's own insert is not visible here; the expiry was committed before it.
    ", (SELECT occurred_at FROM audit_events WHERE session_id = $1::text"
    " AND event_type = 'grace_period_expired' ORDER BY sequence LIMIT 1) AS expired_at"
)
_AT_PLACE = f"SELECT {rows.EVENT_COLUMNS} FROM audit_events WHERE session_id = $1 AND sequence = $2"  # noqa: S608


@functools.cache
def _append_sql(shape: tuple[bool, bool, bool] | None, expiry: bool) -> str:
    """Append an event and, when it was written, fold it into the projections ($9 on).

    `expiry`: the result also says when the session's grace period expired.
    """
    result = _APPEND_RESULT + (_EXPIRED_AT if expiry else "")
    if shape is None:
        return _APPEND + result
    fold = projections.fold_sql(shape, 9, "EXISTS (SELECT 1 FROM ins)", one_session=True)
    return _APPEND + ", " + fold + result


async def _insert(connection: Connection, event: AuditEvent, *, expiry: bool = False,
                  ) -> tuple[asyncpg.Record | None, datetime | None]:
    """Insert the event linked into its chain, with its projections, in one statement.

    Returns None when written, else the row that holds its place; and, with `expiry`, when
    the session's grace period expired (the same statement read it).
    """
    _check_data(event)
    encoding = canonical_parts(
        session_id=event.session_id, sequence=event.sequence,
        event_type=event.event_type.value, occurred_at=event.occurred_at, data=event.data,
    )
    arguments: list[object] = [
        event.session_id, event.sequence, event.event_type.value, event.occurred_at,
        encoding.data, encoding.prefix, encoding.suffix, GENESIS,
    ]
    fold = projections.net([event])
    if fold is not None:
        arguments += fold.parameters()
    result = await connection.fetchrow(
        _append_sql(None if fold is None else fold.shape, expiry), *arguments
    )
    assert result is not None
    expired_at: datetime | None = result["expired_at"] if expiry else None
    if result["written"]:
        return None, expired_at
    row = await connection.fetchrow(_AT_PLACE, event.session_id, event.sequence)
    if row is not None:
        return row, expired_at
    if not result["linked"]:
        raise _parent_missing(event)
    raise _vanished(event)


async def _supersede(connection: Connection, rest: Sequence[AuditEvent]) -> Recorded:
    """Mark the rows from `rest[0]`'s place on as superseded, and append `rest` after them.

    Called in a transaction, when another event holds `rest[0]`'s place. A retry of this
    very supersession (its task failed too) finds its events already after its marker.
    """
    head = rest[0]
    found = await connection.fetch(
        f"SELECT {rows.EVENT_COLUMNS} FROM audit_events"  # noqa: S608
        " WHERE session_id = $1 AND sequence >= $2 ORDER BY sequence",
        head.session_id, head.sequence,
    )
    if any(row["event_type"] == AuditEventType.CLOSED.value for row in found):
        msg = (f"audit event {head.session_id}#{head.sequence} already recorded with "
               "different content, and the trail is closed")
        raise AuditConflictError(msg)
    by_place = {row["sequence"]: row for row in found}
    for row in reversed(found):
        if (row["event_type"] == AuditEventType.TRAIL_SUPERSEDED.value
                and json.loads(row["data"]).get("first") == head.sequence):
            after = [by_place.get(row["sequence"] + 1 + offset) for offset in range(len(rest))]
            if all(place is not None and _same(place, event.model_copy(
                    update={"sequence": place["sequence"]}))
                   for place, event in zip(after, rest, strict=True)):
                return Recorded(events=tuple(rows.event(place) for place in after if place),
                                new=())
            break
    last: int = found[-1]["sequence"]
    marker = new_event(
        session_id=head.session_id, sequence=last + 1, occurred_at=head.occurred_at,
        details=TrailSuperseded(first=head.sequence, last=last),
    )
    placed = [event.model_copy(update={"sequence": last + 2 + offset})
              for offset, event in enumerate(rest)]
    for event in (marker, *placed):
        if (await _insert(connection, event))[0] is not None:
            msg = f"audit trail {head.session_id} moved while it was superseded; retried"
            raise AuditParentMissingError(msg)
    if any(row["event_type"] in projections.PROJECTED for row in found):
        await projections.refold_session(connection, head.session_id, live(
            [rows.event(row) for row in await connection.fetch(
                f"SELECT {rows.EVENT_COLUMNS} FROM audit_events"  # noqa: S608
                " WHERE session_id = $1 ORDER BY sequence", head.session_id)]
        ))
    return Recorded(events=tuple(placed), new=tuple(placed))


def _check_data(event: AuditEvent) -> None:
    """Refuse data whose hash could differ from the hash of what reads back.

    A float can come back from jsonb in another form (1e20, 1.0), and the hash is computed
    before the row is read; strings, integers, booleans and None come back as they went in.
    """
    for key, value in event.data.items():
        if value is not None and not isinstance(value, _DATA_TYPES):
            msg = (
                f"audit event {event.session_id}#{event.sequence}: data[{key!r}] is a "
                f"{type(value).__name__}; audit data holds only str, int, bool and None"
            )
            raise ValueError(msg)


_DATA_TYPES = (str, int)
"""What `_check_data` lets through besides None (bool is an int)."""


def _canonical(event: AuditEvent) -> bytes:
    return canonical_event(
        session_id=event.session_id, sequence=event.sequence,
        event_type=event.event_type.value, occurred_at=event.occurred_at, data=event.data,
        prev_hash="",
    )


def _same(row: asyncpg.Record, event: AuditEvent) -> bool:
    """Whether the recorded row is this very event, at any time.

    Compared by canonical encoding, as the hash sees them: `1` and `True` are equal in
    Python but not in the trail.
    """
    recorded = canonical_event(
        session_id=row["session_id"], sequence=row["sequence"], event_type=row["event_type"],
        occurred_at=row["occurred_at"], data=json.loads(row["data"]), prev_hash="",
    )
    return recorded == _canonical(event.model_copy(update={"occurred_at": row["occurred_at"]}))


def _parent_missing(event: AuditEvent) -> AuditParentMissingError:
    return AuditParentMissingError(
        f"audit event {event.session_id}#{event.sequence} cannot be appended yet: "
        f"{event.session_id}#{event.sequence - 1} is not recorded"
    )


def _vanished(event: AuditEvent) -> RuntimeError:
    """A row the insert skipped as already there, and then not found (purged meanwhile?)."""
    return RuntimeError(
        f"audit event {event.session_id}#{event.sequence} was neither written nor found"
    )
