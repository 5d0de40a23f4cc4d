"""The append-only audit history and the records derived from it.

The store is the only code that writes SQL for the audit trail; every statement is
parameterised. Appends are idempotent on `(session_id, sequence)`: a retried activity finds
its row already there and succeeds without writing again. Each append also links the row
into the session's hash chain (`missed_session.store.chain`) and folds it into the
projections, in one statement: it reads the parent row's hash (`sequence - 1`; the workflow
numbers events without gaps) and computes the row's hash in the database from it and the
canonical encoding cut around it (`chain.canonical_parts`). No lock is needed: rows are
never changed once written, so the parent's hash cannot move; an event whose parent is not
committed yet finds no parent and is refused, to be retried; and the primary key lets only
one row take each place, so two rows can never link to the same parent. One statement is
one round trip and its own transaction. A batch (`append_many`) is chained in Python and
inserted, with its projections, in one statement too when it starts its sessions.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import WorkflowHistory

from missed_session.domain.events import TrailSuperseded, live, new_event
from missed_session.domain.follow_up import weekly_slot
from missed_session.domain.models import (
    AttendanceSummary,
    AuditEvent,
    AuditEventType,
    FollowUpPlan,
    Outcome,
    TherapistNotice,
)
from missed_session.store import checkpoints, history_archive, projections
from missed_session.store.chain import (
    GENESIS,
    ChainRow,
    canonical_event,
    canonical_parts,
    chained,
)
from missed_session.store.database import Connection

ATTENDANCE_WINDOW_DAYS = 90
"""How far back follow-up planning looks."""


class AuditConflictError(RuntimeError):
    """A different event already holds this place in the session's trail.

    Another type or other data: a non-deterministic workflow change, a second writer, or a
    retried workflow task that took another branch than the task that wrote the row. Never
    retried: the trail must not be papered over. (The same event at a later time is no
    conflict: see `AuditStore.append`.)
    """


class AuditParentMissingError(RuntimeError):
    """The event's predecessor in the session's trail is not recorded (yet).

    Events are appended in sequence order, each linked to the one before it; an event that
    overtook its predecessor (two activities in flight) succeeds when retried after it.
    """


@dataclass(frozen=True)
class PurgeRecord:
    """What one purge deleted; its row in `audit_purges` is the purge's own audit record."""

    purge_id: int
    """Id of the purge's record."""
    sessions: int
    """Sessions deleted whole."""
    events: int
    """Audit rows deleted."""


@dataclass(frozen=True)
class Recorded:
    """What a workflow's write left in its trail (`AuditStore.record`)."""

    events: tuple[AuditEvent, ...]
    """The events as recorded, in order, at the places they hold: the next one follows."""
    new: tuple[AuditEvent, ...]
    """Those this write put there (the others were there already)."""


class AuditStore:
    """Appends audit events and maintains the attendance record and therapist inbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool it writes through (for the checkpoint log's readers)."""
        return self._pool

    async def append(self, event: AuditEvent) -> bool:
        """Append one event; returns False when this event was already recorded.

        "This event" is the same type and data at the same place, at any time: a workflow
        task that wrote it and then did not complete (its worker died, the server
        restarted) is run again with a later `workflow.now()`, and builds the same event
        with a later `occurred_at`. The first write wins; `recorded` reads it back.
        Raises `AuditConflictError` when another event holds its place, and
        `AuditParentMissingError` when the event before it is not recorded yet.
        """
        async with self._pool.acquire() as connection:
            return await _append(connection, event)

    async def record(self, batch: Sequence[AuditEvent]) -> Recorded:
        """The session workflow's own append of its next events (consecutive, one session).

        Like `append`, a retry finds its first write (same type and data, any time) and
        gets it back. Unlike `append`, another event at the place is not a conflict but a
        workflow task that wrote rows and did not complete, and whose retry took another
        branch: the history holds none of those rows (had the task completed, its retry
        would not write again). They are kept and marked superseded by a `trail_superseded`
        row after the last of them, the batch follows the marker, and the workflow goes on
        from the places returned. A closed trail is final: that stays a conflict.
        """
        async with self._pool.acquire() as connection:
            return await _record(connection, batch)

    async def record_closing(self, event: AuditEvent, *, client_ref: str, therapist_id: str,
                             start: datetime, outcome: Outcome) -> Recorded:
        """`record` the `closed` event and write the attendance row, together or neither."""
        async with self._pool.acquire() as connection, connection.transaction():
            recorded = await _record(connection, [event])
            await _attend(connection, recorded.events[0], client_ref=client_ref,
                          therapist_id=therapist_id, start=start, outcome=outcome)
            return recorded

    async def append_many(self, events: Sequence[AuditEvent]) -> int:
        """Append a batch of events, of any sessions, all or none; returns the rows written.

        For bulk writers (imports, backfills): one statement per batch when the batch starts
        its sessions, a handful otherwise, instead of one per event. Each session's rows
        are chained in Python, in sequence order, from the parent row the batch locks and
        reads (none when the batch starts the session); every event needs its parent in the
        batch or already recorded. Idempotent like `append`: events already recorded
        identically are skipped; one recorded differently raises `AuditConflictError`, and
        nothing of the batch is written.
        """
        batch = _unique(events)
        if not batch:
            return 0
        parents = _outside_parents(batch)
        columns: list[list[Any]] | None = None
        if not parents:
            # Nothing to lock and the whole chain is here: one statement, which a row
            # already recorded (a retry) fails as a whole, for the path below to sort out.
            columns = _chain(batch, {})
            fold = projections.net(batch)
            async with self._pool.acquire() as connection:
                try:
                    await connection.execute(
                        _insert_many_sql(None if fold is None else fold.shape),
                        *columns, *([] if fold is None else fold.parameters()),
                    )
                except asyncpg.UniqueViolationError as error:
                    if error.constraint_name != "audit_events_pkey":
                        raise
                else:
                    return len(batch)
        async with self._pool.acquire() as connection, connection.transaction():
            links: dict[tuple[str, int], str] = {}
            if parents:
                found = await connection.fetch(
                    "SELECT session_id, sequence, hash FROM audit_events"
                    " WHERE (session_id, sequence) IN"
                    " (SELECT * FROM unnest($1::text[], $2::integer[]))",
                    [key[0] for key in parents], [key[1] for key in parents],
                )
                links = {(row["session_id"], row["sequence"]): row["hash"] or GENESIS
                         for row in found}
            if columns is None:  # (else chained above, from no parents: the same rows)
                columns = _chain(batch, links)
            # Rows already recorded (a retry, or another writer since the lock) are skipped
            # here and compared below: the transaction rolls back if one is not ours.
            inserted = await connection.fetch(
                _INSERT_MANY + " ON CONFLICT (session_id, sequence) DO NOTHING"
                " RETURNING session_id, sequence",
                *columns,
            )
            written = {(row["session_id"], row["sequence"]) for row in inserted}
            if len(written) < len(batch):
                await _check_recorded(connection, [
                    (event, own) for event, own in zip(batch, columns[_HASH], strict=True)
                    if (event.session_id, event.sequence) not in written
                ])
            await projections.apply_many(connection, [
                event for event in batch if (event.session_id, event.sequence) in written
            ])
        return len(written)

    async def recorded(self, session_id: str, sequence: int) -> AuditEvent | None:
        """The event recorded at this place of the session's trail, if any."""
        row = await self._pool.fetchrow(
            "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
            " WHERE session_id = $1 AND sequence = $2",
            session_id, sequence,
        )
        return None if row is None else _event(row)

    async def trail(self, session_id: str) -> list[AuditEvent]:
        """The session's events in order."""
        rows = await self._pool.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
            " WHERE session_id = $1 ORDER BY sequence",
            session_id,
        )
        return [_event(row) for row in rows]

    async def chain_rows(self, session_id: str) -> list[ChainRow]:
        """The session's rows with their stored hashes, for verification."""
        rows = await self._pool.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data, prev_hash, hash"
            " FROM audit_events WHERE session_id = $1 ORDER BY sequence",
            session_id,
        )
        return [_chain_row(row) for row in rows]

    async def archived_history(self, session_id: str) -> WorkflowHistory | None:
        """The session's Temporal history as archived at close (payloads still sealed)."""
        found = await history_archive.archived(self._pool, session_id)
        return None if found is None else found.workflow_history()

    async def checkpoints(self, session_id: str) -> list[checkpoints.Checkpoint]:
        """The session's signed checkpoints, latest first."""
        return await checkpoints.checkpoints_of(self._pool, session_id)

    async def session_ids(self, *, after: str = "", limit: int = 500) -> list[str]:
        """Sessions with an audit trail or an attendance row, in order, one page after `after`."""
        rows = await self._pool.fetch(
            "SELECT session_id FROM (SELECT session_id FROM audit_events"
            " UNION SELECT session_id FROM attendance) AS s WHERE session_id > $1"
            " ORDER BY session_id LIMIT $2",
            after, limit,
        )
        return [row["session_id"] for row in rows]

    async def sessions_starting(self, start: datetime, end: datetime) -> list[str]:
        """Sessions booked to start in [start, end) (their `scheduled` row), in id order."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT session_id FROM audit_events WHERE event_type = 'scheduled'"
            " AND (data->>'start')::timestamptz >= $1 AND (data->>'start')::timestamptz < $2"
            " ORDER BY session_id", start, end)
        return [row["session_id"] for row in rows]

    async def session_count(self) -> int:
        """How many sessions have an audit trail or an attendance row."""
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM (SELECT session_id FROM audit_events"
            " UNION SELECT session_id FROM attendance) AS s"
        )
        return count

    async def open_session_count(self) -> int:
        """Sessions with a trail but no attendance row: running, or stopped before closing."""
        count: int = await self._pool.fetchval(
            "SELECT count(DISTINCT e.session_id) FROM audit_events AS e"
            " WHERE NOT EXISTS (SELECT 1 FROM attendance AS a WHERE a.session_id = e.session_id)"
        )
        return count

    async def is_closed(self, session_id: str) -> bool:
        """Whether the session's attendance row (written with `closed`) exists."""
        found = await self._pool.fetchval(
            "SELECT 1 FROM attendance WHERE session_id = $1", session_id
        )
        return found is not None

    async def purge(self, *, cutoff: datetime, retention_years: int, requested_by: str,
                    max_sessions: int) -> PurgeRecord:
        """Delete closed sessions whose every event is older than `cutoff`; record the purge.

        Only `purge_audit_sessions()` can delete audit rows, and the database refuses a
        cutoff inside the retention period, whatever the caller says.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            purge_id: int = await connection.fetchval(
                "SELECT purge_audit_sessions($1, $2, $3, $4)",
                cutoff, retention_years, requested_by, max_sessions,
            )
            row = await connection.fetchrow(
                "SELECT id, sessions, events, session_ids FROM audit_purges WHERE id = $1",
                purge_id,
            )
            assert row is not None
            await connection.execute(
                "DELETE FROM projection_open_tasks WHERE session_id = ANY ($1::text[])",
                row["session_ids"],
            )
            await connection.execute(
                "DELETE FROM projection_attendance WHERE session_id = ANY ($1::text[])",
                row["session_ids"],
            )
        assert row is not None
        return PurgeRecord(purge_id=row["id"], sessions=row["sessions"], events=row["events"])

    async def rebuild_projections(self) -> int:
        """Empty and refill the projections from the trail; returns the events read."""
        async with self._pool.acquire() as connection:
            return await projections.rebuild(connection)

    async def add_notice(self, notice: TherapistNotice) -> bool:
        """Put an alert or task in the therapist's inbox once; False if already there."""
        status = await self._pool.execute(
            "INSERT INTO therapist_inbox (key, session_id, therapist_id, kind, priority, title)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
            notice.key, notice.session_id, notice.therapist_id, notice.kind.value,
            notice.priority.value, notice.title,
        )
        return status.endswith(" 1")

    async def attendance_summary(self, *, client_ref: str, session_id: str, until: datetime,
                                 current: Outcome,
                                 time_zone: str | None = None) -> AttendanceSummary:
        """Attendance in the window before `until`, with the current session counted.

        `until` is the current session's start; `time_zone` (the client's) decides what
        "the same weekday and hour" means for the repeated-slot pattern.
        """
        rows = await self._pool.fetch(
            "SELECT outcome, start_at FROM attendance WHERE client_ref = $1 AND session_id <> $2"
            " AND start_at >= $3 AND start_at < $4 AND outcome <> $5 ORDER BY start_at DESC",
            client_ref, session_id, until - timedelta(days=ATTENDANCE_WINDOW_DAYS), until,
            Outcome.CANCELLED.value,
        )
        outcomes = [current, *(Outcome(row["outcome"]) for row in rows)]
        consecutive = 0
        for outcome in outcomes:
            if not outcome.is_no_show:
                break
            consecutive += 1
        zone = ZoneInfo(time_zone) if time_zone else UTC
        slot = weekly_slot(until, zone)
        missed_starts = [until] if current.is_no_show else []
        missed_starts += [row["start_at"] for row in rows if Outcome(row["outcome"]).is_no_show]
        return AttendanceSummary(
            window_days=ATTENDANCE_WINDOW_DAYS,
            sessions=len(outcomes),
            no_shows=sum(outcome.is_no_show for outcome in outcomes),
            consecutive_no_shows=consecutive,
            late_arrivals=sum(outcome is Outcome.ATTENDED_LATE for outcome in outcomes),
            same_slot_no_shows=sum(weekly_slot(start, zone) == slot for start in missed_starts),
            slot=slot,
        )

    async def save_plan(self, *, session_id: str, client_ref: str,
                        plan: FollowUpPlan) -> FollowUpPlan:
        """Keep the first plan made for a session and return it.

        A retry may see a different attendance history (another session closed meanwhile);
        the plan already recorded is the one that stands.
        """
        stored: str = await self._pool.fetchval(
            "WITH saved AS ("
            " INSERT INTO follow_up_plans (session_id, client_ref, plan) VALUES ($1, $2, $3)"
            " ON CONFLICT (session_id) DO NOTHING RETURNING plan)"
            " SELECT plan FROM saved UNION ALL"
            " SELECT plan FROM follow_up_plans WHERE session_id = $1 LIMIT 1",
            session_id, client_ref, plan.model_dump_json(),
        )
        return FollowUpPlan.model_validate_json(stored)


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
_INSERT_MANY = (  # a row already there fails it (unless ON CONFLICT is added)
    "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data, prev_hash,"
    " hash) SELECT s, n, t, o, d::jsonb, p, h FROM unnest($1::text[], $2::integer[],"
    " $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[])"
    " AS r(s, n, t, o, d, p, h)"
)
_HASH = 6
"""Where `_chain` puts the rows' hashes among `_INSERT_MANY`'s parameters."""


@functools.cache
def _append_sql(shape: tuple[bool, bool, bool] | None) -> str:
    """Append an event and, when it was written, fold it into the projections ($9 on)."""
    if shape is None:
        return _APPEND + _APPEND_RESULT
    fold = projections.fold_sql(shape, 9, "EXISTS (SELECT 1 FROM ins)", one_session=True)
    return _APPEND + ", " + fold + _APPEND_RESULT


@functools.cache
def _insert_many_sql(shape: tuple[bool, bool, bool] | None) -> str:
    """Insert a chained batch and fold it into the projections ($8 on), or fail as a whole."""
    if shape is None:
        return _INSERT_MANY
    fold = projections.fold_sql(shape, 8, "true")
    return f"WITH ins AS ({_INSERT_MANY} RETURNING 1), {fold} SELECT count(*) FROM ins"  # noqa: S608


async def _append(connection: Connection, event: AuditEvent) -> bool:
    """Insert the event, or find it already there (False); another event there: a conflict."""
    row = await _insert(connection, event)
    if row is None:
        return True
    _check_same(row, event, any_time=True)
    return False


async def _insert(connection: Connection, event: AuditEvent) -> asyncpg.Record | None:
    """Insert the event linked into its chain, with its projections, in one statement.

    Returns None when written, else the row that holds its place.
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
        _append_sql(None if fold is None else fold.shape), *arguments
    )
    assert result is not None
    if result["written"]:
        return None
    row = await connection.fetchrow(
        "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
        " WHERE session_id = $1 AND sequence = $2",
        event.session_id, event.sequence,
    )
    if row is not None:
        return row
    if not result["linked"]:
        raise _parent_missing(event)
    raise _vanished(event)


async def _record(connection: Connection, batch: Sequence[AuditEvent]) -> Recorded:
    """The workflow's own append (see `AuditStore.record`); one statement per new event."""
    recorded: list[AuditEvent] = []
    new: list[AuditEvent] = []
    for index, event in enumerate(batch):
        row = await _insert(connection, event)
        if row is None:
            recorded.append(event)
            new.append(event)
        elif _same(row, event, any_time=True):
            recorded.append(_event(row))
        else:
            async with connection.transaction():
                placed = await _supersede(connection, batch[index:])
            return Recorded(events=(*recorded, *placed.events), new=(*new, *placed.new))
    return Recorded(events=tuple(recorded), new=tuple(new))


async def _supersede(connection: Connection, rest: Sequence[AuditEvent]) -> Recorded:
    """Mark the rows from `rest[0]`'s place on as superseded, and append `rest` after them.

    Called in a transaction, when another event holds `rest[0]`'s place. A retry of this
    very supersession (its task failed too) finds its events already after its marker.
    """
    head = rest[0]
    rows = await connection.fetch(
        "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
        " WHERE session_id = $1 AND sequence >= $2 ORDER BY sequence",
        head.session_id, head.sequence,
    )
    if any(row["event_type"] == AuditEventType.CLOSED.value for row in rows):
        msg = (f"audit event {head.session_id}#{head.sequence} already recorded with "
               "different content, and the trail is closed")
        raise AuditConflictError(msg)
    by_place = {row["sequence"]: row for row in rows}
    for row in reversed(rows):
        if (row["event_type"] == AuditEventType.TRAIL_SUPERSEDED.value
                and json.loads(row["data"]).get("first") == head.sequence):
            after = [by_place.get(row["sequence"] + 1 + offset) for offset in range(len(rest))]
            if all(found is not None and _same(found, event.model_copy(
                    update={"sequence": found["sequence"]}), any_time=True)
                   for found, event in zip(after, rest, strict=True)):
                return Recorded(events=tuple(_event(found) for found in after if found),
                                new=())
            break
    last: int = rows[-1]["sequence"]
    marker = new_event(
        session_id=head.session_id, sequence=last + 1, occurred_at=head.occurred_at,
        details=TrailSuperseded(first=head.sequence, last=last),
    )
    placed = [event.model_copy(update={"sequence": last + 2 + offset})
              for offset, event in enumerate(rest)]
    for event in (marker, *placed):
        if await _insert(connection, event) is not None:
            msg = f"audit trail {head.session_id} moved while it was superseded; retried"
            raise AuditParentMissingError(msg)
    if any(row["event_type"] in projections.PROJECTED for row in rows):
        await projections.refold_session(connection, head.session_id, live(
            [_event(row) for row in await connection.fetch(
                "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
                " WHERE session_id = $1 ORDER BY sequence", head.session_id)]
        ))
    return Recorded(events=tuple(placed), new=tuple(placed))


async def _attend(connection: Connection, closed: AuditEvent, *, client_ref: str,
                  therapist_id: str, start: datetime, outcome: Outcome) -> None:
    """The attendance row a `closed` event implies (the first one written stands)."""
    await connection.execute(
        "INSERT INTO attendance (session_id, client_ref, therapist_id, start_at,"
        " outcome, closed_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (session_id) DO NOTHING",
        closed.session_id, client_ref, therapist_id, start, outcome.value, closed.occurred_at,
    )


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
_PLACE = operator.attrgetter("session_id", "sequence")
"""An event's place: `(session_id, sequence)`."""


def _unique(events: Sequence[AuditEvent]) -> list[AuditEvent]:
    """The events in (session, sequence) order, each once; checked like `append` checks."""
    unique: list[AuditEvent] = []
    first: AuditEvent | None = None  # the first of the events at the place before
    for event in sorted(events, key=_PLACE):
        _check_data(event)
        if (first is not None and first.sequence == event.sequence
                and first.session_id == event.session_id):  # sorted: the same place is next
            if first is not event and _canonical(first) != _canonical(event):
                raise _conflict(event)
            continue
        unique.append(event)
        first = event
    return unique


def _outside_parents(batch: Sequence[AuditEvent]) -> list[tuple[str, int]]:
    """The places, in order, of the parents the batch (as `_unique` returns it) lacks."""
    parents = []
    session_id, sequence = "", 0
    for event in batch:
        if event.sequence > 1 and (event.session_id != session_id
                                   or event.sequence - 1 != sequence):
            parents.append((event.session_id, event.sequence - 1))
        session_id, sequence = event.session_id, event.sequence
    return parents


def _chain(batch: Sequence[AuditEvent], links: dict[tuple[str, int], str]) -> list[list[Any]]:
    """The batch (as `_unique` returns it) linked, each event to its parent's hash.

    `links` holds the hashes of the parents recorded before the batch; every other parent
    must come just before its child in the batch. Returns `_INSERT_MANY`'s parameters:
    one list per column, the rows' hashes at `_HASH`.
    """
    session_ids: list[str] = []
    sequences: list[int] = []
    event_types: list[str] = []
    times: list[datetime] = []
    datas: list[str] = []
    prev_hashes: list[str] = []
    hashes: list[str] = []
    previous_session, previous_sequence, own = "", 0, GENESIS
    for event in batch:
        session_id = event.session_id
        sequence = event.sequence
        if sequence == 1:
            prev_hash = GENESIS
        elif session_id == previous_session and sequence - 1 == previous_sequence:
            prev_hash = own  # the parent is the row before, chained just now
        else:
            parent = links.get((session_id, sequence - 1))
            if parent is None:
                raise _parent_missing(event)
            prev_hash = parent
        event_type: str = event.event_type._value_  # `.value` is a property, and dearer
        occurred_at = event.occurred_at
        data, own = chained(session_id=session_id, sequence=sequence, event_type=event_type,
                            occurred_at=occurred_at, data=event.data, prev_hash=prev_hash)
        session_ids.append(session_id)
        sequences.append(sequence)
        event_types.append(event_type)
        times.append(occurred_at)
        datas.append(data)
        prev_hashes.append(prev_hash)
        hashes.append(own)
        previous_session, previous_sequence = session_id, sequence
    return [session_ids, sequences, event_types, times, datas, prev_hashes, hashes]


async def _check_recorded(connection: Connection,
                          skipped: Sequence[tuple[AuditEvent, str]]) -> None:
    """The batch's rows found already recorded must be its own events, as it chained them.

    The same event on the same parent has the same hash. A row that holds the event but
    another hash does not chain from its parent (`audit verify` names it), and the batch's
    rows after it were linked to the hash it should have: the batch is refused too.
    """
    found = await connection.fetch(
        "SELECT session_id, sequence, event_type, occurred_at, data, hash FROM audit_events"
        " WHERE (session_id, sequence) IN (SELECT * FROM unnest($1::text[], $2::integer[]))",
        [event.session_id for event, _ in skipped], [event.sequence for event, _ in skipped],
    )
    recorded = {(row["session_id"], row["sequence"]): row for row in found}
    for event, own in skipped:
        stored = recorded.get((event.session_id, event.sequence))
        if stored is None:
            raise _vanished(event)
        _check_same(stored, event)
        if stored["hash"] != own:
            msg = (
                f"audit event {event.session_id}#{event.sequence} is recorded with a hash that "
                "does not follow from its parent's; see `audit verify`"
            )
            raise AuditConflictError(msg)


def _canonical(event: AuditEvent) -> bytes:
    return canonical_event(
        session_id=event.session_id, sequence=event.sequence,
        event_type=event.event_type.value, occurred_at=event.occurred_at, data=event.data,
        prev_hash="",
    )


def _check_same(row: asyncpg.Record, event: AuditEvent, *, any_time: bool = False) -> None:
    """Raise unless the recorded row is this very event (at any time, with `any_time`).

    A batch (`append_many`) compares times too: its rows after this one were chained to
    the hash this event has at its own time.
    """
    if not _same(row, event, any_time=any_time):
        raise _conflict(event)


def _same(row: asyncpg.Record, event: AuditEvent, *, any_time: bool) -> bool:
    """Whether the recorded row is this very event (at any time, with `any_time`).

    Compared by canonical encoding, as the hash sees them: `1` and `True` are equal in
    Python but not in the trail.
    """
    recorded = canonical_event(
        session_id=row["session_id"], sequence=row["sequence"], event_type=row["event_type"],
        occurred_at=row["occurred_at"], data=json.loads(row["data"]), prev_hash="",
    )
    if any_time:
        event = event.model_copy(update={"occurred_at": row["occurred_at"]})
    return recorded == _canonical(event)


def _conflict(event: AuditEvent) -> AuditConflictError:
    return AuditConflictError(
        f"audit event {event.session_id}#{event.sequence} already recorded with "
        "different content"
    )


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


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        session_id=row["session_id"],
        sequence=row["sequence"],
        event_type=AuditEventType(row["event_type"]),
        occurred_at=row["occurred_at"],
        data=json.loads(row["data"]),
    )


def _chain_row(row: asyncpg.Record) -> ChainRow:
    return ChainRow(
        session_id=row["session_id"],
        sequence=row["sequence"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        data=json.loads(row["data"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
