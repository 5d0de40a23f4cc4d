"""Projections of the audit trail: attendance and open therapist tasks.

An event becomes zero or more `Op`s, each meaning one change, applied in order:

- `attendance`: insert the session's attendance row, unless it exists;
- `start`: set the row's start, if the row exists;
- `close`: set its outcome and when it closed, if it exists;
- `task`: insert an open task, unless its key exists, with the therapist of the session's
  attendance row ('' without one).

`fold_sql()` carries out the ops of any number of events, in order, in one statement (the
append path, `store.append`, splices it into the statement that appends an event, gated on
the row being written; why there and not in a follower: that module's docstring), so the
projections never disagree with the trail and appending stays one statement. A statement
sees the tables as they were before it, so Python first reduces the ops to their net effect
(`net()`), for both states a session's attendance row can be in: absent, when only the first
`attendance` op counts and only the ops after it change the row or see its therapist;
present, when every `start` and `close` counts, the last winning, and tasks see the row's
therapist. The statement applies each variant to the rows in its state. `rebuild` empties
the tables and folds every event again: the result must equal the incremental one
(`tests/test_audit_projections.py` checks it after a mixed day; `tests/test_audit_append.py`
checks the net effect against the ops applied one by one).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from missed_session.domain.events import live
from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.store.connection import Connection

URGENT_TASKS = frozenset({"safety_check"})
"""Plan tasks that are urgent; the rest are routine."""
PROJECTED = frozenset(kind.value for kind in (
    AuditEventType.SCHEDULED, AuditEventType.RESCHEDULED, AuditEventType.CLOSED,
    AuditEventType.ESCALATION_BLOCKED, AuditEventType.PLAN_CREATED,
))
"""The event types (their values) that `ops` turns into ops: the others change nothing."""


class Op(NamedTuple):
    """One change to a projection table; the fields an action does not use are None."""

    action: str
    """`attendance` (first schedule), `start` (rescheduled), `close`, or `task`."""
    session_id: str
    """The session whose rows change."""
    at: datetime
    """Start (attendance, start), when it closed (close), or when created (task)."""
    client_ref: str | None = None
    """Attendance: the pseudonymous client."""
    therapist_id: str | None = None
    """Attendance: whose session it is (a task takes it from the attendance row)."""
    outcome: str | None = None
    """Close: how the session ended."""
    key: str | None = None
    """Task: its key, which makes creating it idempotent."""
    kind: str | None = None
    """Task: what to do."""
    priority: str | None = None
    """Task: `urgent` or `routine`."""


def ops(event: AuditEvent) -> list[Op]:
    """What the event does to the projections (nothing, for most types)."""
    data = event.data
    kind = event.event_type
    session_id = event.session_id
    if kind is AuditEventType.SCHEDULED:
        return [Op("attendance", session_id, _time(data.get("start"), event.occurred_at),
                   client_ref=str(data.get("client_ref", "")),
                   therapist_id=str(data.get("therapist_id", "")))]
    if kind is AuditEventType.RESCHEDULED:
        return [Op("start", session_id, _time(data.get("start"), event.occurred_at))]
    if kind is AuditEventType.CLOSED:
        return [Op("close", session_id, event.occurred_at, outcome=str(data.get("outcome", "")))]
    if kind is AuditEventType.ESCALATION_BLOCKED:
        key = str(data.get("task") or f"{session_id}/escalation-blocked")
        return [_task(event, key, "decide_after_blocked_escalation", "urgent")]
    if kind is AuditEventType.PLAN_CREATED:
        return [_task(event, f"{session_id}/task/{name}", name,
                      "urgent" if name in URGENT_TASKS else "routine")
                for name in str(data.get("tasks") or "").split(",") if name]
    return []


_PARTS = (
    # (input, its columns and types, what writes it), in the order of their parameters.
    ("fold_absent",  # rows to insert if absent: the net effect from the first `attendance`
     (("session_id", "text"), ("client_ref", "text"), ("therapist_id", "text"),
      ("start_at", "timestamptz"), ("outcome", "text"), ("closed_at", "timestamptz")),
     # Sees the table as it was before the statement, as the update does: the insert skips
     # rows that existed, the update changes only those.
     "fold_insert AS (INSERT INTO projection_attendance (session_id, client_ref, therapist_id,"
     " start_at, outcome, closed_at) SELECT session_id, client_ref, therapist_id, start_at,"
     " outcome, closed_at FROM fold_absent ON CONFLICT (session_id) DO NOTHING)"),
    ("fold_present",  # changes if present: the last start, the last close (NULL: unchanged)
     (("session_id", "text"), ("start_at", "timestamptz"), ("outcome", "text"),
      ("closed_at", "timestamptz")),
     "fold_update AS (UPDATE projection_attendance AS p"
     " SET start_at = coalesce(f.start_at, p.start_at), outcome = coalesce(f.outcome, p.outcome),"
     " closed_at = coalesce(f.closed_at, p.closed_at)"
     " FROM fold_present AS f WHERE p.session_id = f.session_id)"),
    ("fold_tasks",  # tasks in order, with the therapist they get if the row is absent
     (("key", "text"), ("session_id", "text"), ("kind", "text"), ("priority", "text"),
      ("created_at", "timestamptz"), ("therapist_id", "text")),
     # In order, so that of two tasks with one key the first is the one created.
     "fold_task AS (INSERT INTO projection_open_tasks (key, session_id, therapist_id, kind,"
     " priority, created_at) SELECT t.key, t.session_id, coalesce((SELECT a.therapist_id"
     " FROM projection_attendance AS a WHERE a.session_id = t.session_id), t.therapist_id),"
     " t.kind, t.priority, t.created_at FROM fold_tasks AS t ORDER BY t.n"
     " ON CONFLICT (key) DO NOTHING)"),
)
_ONE_SESSION_TASKS = (
    # The same, for tasks all of one session: its therapist looked up once, not per task.
    # PostgreSQL estimates an array parameter at ten elements in the plan it keeps, so ten
    # lookups made that plan look dearer than planning afresh for every single event.
    "fold_task AS (INSERT INTO projection_open_tasks (key, session_id, therapist_id, kind,"
    " priority, created_at) SELECT t.key, t.session_id, coalesce((SELECT a.therapist_id"
    " FROM projection_attendance AS a WHERE a.session_id = (SELECT session_id FROM fold_tasks"
    " LIMIT 1)), t.therapist_id), t.kind, t.priority, t.created_at FROM fold_tasks AS t"
    " ORDER BY t.n ON CONFLICT (key) DO NOTHING)"
)


class Fold(NamedTuple):
    """The net effect of some events on the projections, as `fold_sql()` takes it.

    Each part is a list of rows, or empty; a statement includes only the parts that are
    not, so that its plan stays small enough for PostgreSQL to keep (a prepared statement
    whose generic plan looks dearer than planning afresh is planned on every execution).
    """

    absent: list[list[object]]
    present: list[list[object]]
    tasks: list[list[object]]

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        """Which parts there are: the key to `fold_sql()`."""
        return (bool(self.absent), bool(self.present), bool(self.tasks))

    def parameters(self) -> list[list[object]]:
        """The parts there are, column by column: one array per column."""
        return [[row[index] for row in part]
                for part, (_, columns, _) in zip(self, _PARTS, strict=True) if part
                for index in range(len(columns))]


@functools.cache
def fold_sql(shape: tuple[bool, bool, bool], first: int, gate: str, *,
             one_session: bool = False) -> str:
    """CTEs (without `WITH`) that carry out a `Fold` of this shape given from `$first` on.

    `gate` is a constant SQL condition: nothing changes unless it holds (the store's: the
    audit rows were written by the same statement). `one_session`: every op is of the same
    session (one event's, say).
    """
    inputs, writes = [], []
    number = first
    for wanted, (name, columns, write) in zip(shape, _PARTS, strict=True):
        if not wanted:
            continue
        arrays = ", ".join(f"${number + index}::{kind}[]"
                           for index, (_, kind) in enumerate(columns))
        names = ", ".join(column for column, _ in columns)
        number += len(columns)
        numbered = " WITH ORDINALITY" if name == "fold_tasks" else ""
        names += ", n" if numbered else ""
        inputs.append(f"{name} AS (SELECT * FROM unnest({arrays}){numbered}"  # noqa: S608
                      f" AS f({names}) WHERE {gate})")
        writes.append(_ONE_SESSION_TASKS if one_session and numbered else write)
    return ", ".join(inputs + writes)


def net(events: Iterable[AuditEvent]) -> Fold | None:
    """What these events, in order, do to the projections (None: nothing)."""
    absent: dict[str, list[object]] = {}
    present: dict[str, list[object]] = {}
    tasks: list[list[object]] = []
    for event in events:
        if event.event_type._value_ not in PROJECTED:  # (`.value` is a property, dearer)
            continue
        # One event's ops never depend on each other: in order is as good as at once.
        for op in ops(event):
            row = absent.get(op.session_id)
            if op.action == "attendance":
                if row is None:
                    absent[op.session_id] = [op.session_id, op.client_ref, op.therapist_id,
                                             op.at, None, None]
            elif op.action == "start":
                present.setdefault(op.session_id, [op.session_id, None, None, None])[1] = op.at
                if row is not None:
                    row[3] = op.at
            elif op.action == "close":
                change = present.setdefault(op.session_id, [op.session_id, None, None, None])
                change[2:4] = [op.outcome, op.at]
                if row is not None:
                    row[4:6] = [op.outcome, op.at]
            else:
                tasks.append([op.key, op.session_id, op.kind, op.priority, op.at,
                              row[2] if row is not None else ""])
    if not (absent or present or tasks):
        return None
    return Fold(list(absent.values()), list(present.values()), tasks)


async def apply_many(connection: Connection, events: Iterable[AuditEvent]) -> None:
    """Fold newly appended events into the projections, each session's in the order given."""
    change = net(events)
    if change is not None:
        await connection.execute(
            "WITH " + fold_sql(change.shape, 1, "true") + " SELECT 1",
            *change.parameters(),
        )


def _task(event: AuditEvent, key: str, kind: str, priority: str) -> Op:
    return Op("task", event.session_id, event.occurred_at, key=key, kind=kind,
              priority=priority)


def _time(value: object, default: datetime) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else default


async def refold_session(connection: Connection, session_id: str,
                         course: Iterable[AuditEvent]) -> None:
    """Fold one session again from its course (`events.live`), in the caller's transaction.

    After rows were superseded (`store.append.record`): what they projected (a task, a start)
    is not the session's any more.
    """
    await forget(connection, [session_id])
    await apply_many(connection, course)


async def forget(connection: Connection, session_ids: list[str]) -> None:
    """Delete what the sessions projected (purged, or about to be folded again)."""
    await connection.execute(
        "DELETE FROM projection_open_tasks WHERE session_id = ANY ($1::text[])", session_ids
    )
    await connection.execute(
        "DELETE FROM projection_attendance WHERE session_id = ANY ($1::text[])", session_ids
    )


async def rebuild(connection: Connection) -> int:
    """Empty the projections and fold every event again, in one transaction; events read."""
    async with connection.transaction():
        # Appends fold into these tables in their own statement, so holding them exclusively
        # orders every append before or after the rebuild (and needs no privilege on the
        # trail beyond SELECT, which the service's role has).
        await connection.execute(
            "LOCK TABLE projection_attendance, projection_open_tasks IN EXCLUSIVE MODE"
        )
        await connection.execute("DELETE FROM projection_open_tasks")
        await connection.execute("DELETE FROM projection_attendance")
        rows = await connection.fetch(
            "SELECT session_id, sequence, event_type, occurred_at, data FROM audit_events"
            " ORDER BY session_id, sequence"
        )
        trail = []
        for row in rows:
            try:
                event_type = AuditEventType(row["event_type"])
            except ValueError:
                continue  # a type this version does not know projects nothing
            trail.append(AuditEvent(
                session_id=row["session_id"], sequence=row["sequence"], event_type=event_type,
                occurred_at=row["occurred_at"], data=json.loads(row["data"]),
            ))
        await apply_many(connection, live(trail))
    return len(rows)
