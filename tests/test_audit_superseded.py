"""Rows a failed workflow task left, superseded when its retry takes another branch.

A workflow task writes its audit rows (local activities) before it completes. When it does
not complete and its retry sees more than it did (a call-back that arrived while the worker
was dead), the retry can build other events for the same places. `AuditStore.record` keeps
those rows, marks them superseded after the last of them, and appends the retry's events
after the marker; the workflow numbers on from there. These tests drive the store directly;
tests/test_retried_workflow_task.py drives it from a real workflow on the dev server.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from missed_session.audit import export
from missed_session.audit.verify import verify_session
from missed_session.domain import events
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    Modality,
    Outcome,
    ResponseChannel,
    RiskTier,
)
from missed_session.store.append import AuditConflictError
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from tests.support.audit_append import trail
from tests.support.audit_projections import snapshot

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def details_event(session_id: str, sequence: int, details: events.EventDetails,
                  minutes: int = 0) -> AuditEvent:
    return events.new_event(session_id=session_id, sequence=sequence,
                            occurred_at=AT + timedelta(minutes=minutes), details=details)


def responded(session_id: str, sequence: int, minutes: int = 0) -> AuditEvent:
    return details_event(session_id, sequence, events.ClientResponded(
        channel=ResponseChannel.CALL, responder="client", attempt=1), minutes)


def blocked(session_id: str, sequence: int) -> AuditEvent:
    return details_event(session_id, sequence, events.EscalationBlocked(
        reason="no consent on file", task=f"{session_id}/escalation-blocked-1"))


async def test_the_same_event_again_is_its_first_write(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    first = trail(sid, 1)[0]
    written = await store.record([first])
    assert written.events == written.new == (first,)
    later = first.model_copy(update={"occurred_at": first.occurred_at + timedelta(seconds=9)})
    again = await store.record([later])
    assert again.events == (first,)  # the first write's time stands
    assert again.new == ()
    assert await store.trail(sid) == [first]


async def test_another_branch_supersedes_the_rows_from_its_place_on(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    for event in trail(sid, 4):  # 2 and 4: a failed task's rows, as the history never saw
        assert (await store.record([event])).new == (event,)
    retry = responded(sid, 2, minutes=20)

    recorded = await store.record([retry])

    placed = retry.model_copy(update={"sequence": 6})
    assert recorded.events == recorded.new == (placed,)
    rows = await store.trail(sid)
    assert [row.sequence for row in rows] == [1, 2, 3, 4, 5, 6]
    marker = rows[4]
    assert marker.event_type is AuditEventType.TRAIL_SUPERSEDED
    assert events.read(marker) == events.TrailSuperseded(first=2, last=4)
    assert marker.occurred_at == retry.occurred_at
    assert events.live(rows) == [rows[0], placed]
    assert (await verify_session(store, sid)).ok  # every row stays in the chain

    # The retry of the retry (its task failed too) finds its event after the marker.
    again = await store.record([retry.model_copy(update={"occurred_at": AT + timedelta(hours=1)})])
    assert again.events == (placed,)
    assert again.new == ()
    assert len(await store.trail(sid)) == 6
    # The workflow goes on after it.
    nxt = responded(sid, 7, minutes=21)
    assert (await store.record([nxt])).new == (nxt,)


async def test_a_batch_that_diverges_halfway_keeps_its_first_part(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    head = trail(sid, 3)
    for event in head:
        await store.record([event])
    # The no-show's pair, whose first event is the row at 2 and whose second is not 3's.
    pair = [head[1], responded(sid, 3, minutes=5)]

    recorded = await store.record(pair)

    assert recorded.events == (head[1], pair[1].model_copy(update={"sequence": 5}))
    assert recorded.new == recorded.events[1:]
    rows = await store.trail(sid)
    assert events.read(rows[3]) == events.TrailSuperseded(first=3, last=3)
    assert [event.sequence for event in events.live(rows)] == [1, 2, 5]


async def test_a_second_divergence_supersedes_the_first_supersession(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    for event in trail(sid, 3):
        await store.record([event])
    await store.record([responded(sid, 2)])  # marker at 4, event at 5
    # Another retry of the same task took a third branch.
    other = blocked(sid, 2)
    recorded = await store.record([other])
    assert recorded.events == (other.model_copy(update={"sequence": 7}),)
    rows = await store.trail(sid)
    assert events.read(rows[5]) == events.TrailSuperseded(first=2, last=5)
    assert [event.sequence for event in events.live(rows)] == [1, 7]
    assert (await verify_session(store, sid)).ok


async def test_a_closed_trail_is_final(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    head = trail(sid, 2)
    for event in head:
        await store.record([event])
    closed = details_event(sid, 3, events.Closed(outcome=Outcome.ATTENDED, attempts=0))
    await store.record([closed], attendance=Attendance(
        client_ref="c-1", therapist_id="t-ana", start=AT, outcome=Outcome.ATTENDED))

    with pytest.raises(AuditConflictError, match=f"{sid}#2 .*the trail is closed"):
        await store.record([responded(sid, 2)])
    with pytest.raises(AuditConflictError, match="the trail is closed"):
        await store.record(
            [details_event(sid, 3, events.Closed(outcome=Outcome.REACHED, attempts=1))],
            attendance=Attendance(client_ref="c-1", therapist_id="t-ana", start=AT,
                                  outcome=Outcome.REACHED))
    assert len(await store.trail(sid)) == 3
    assert await pool.fetchval("SELECT outcome FROM attendance WHERE session_id = $1",
                               sid) == "attended"


async def test_what_superseded_rows_projected_is_undone(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    head = trail(sid, 2)
    for event in head:
        await store.record([event])
    await store.record([blocked(sid, 3)])  # a failed task's: an urgent task for the therapist
    tasks = "SELECT key FROM projection_open_tasks WHERE session_id = $1"
    assert [row["key"] for row in await pool.fetch(tasks, sid)] == [f"{sid}/escalation-blocked-1"]

    await store.record([responded(sid, 3)])  # the retry: the client had called back

    assert await pool.fetch(tasks, sid) == []
    attendance = await pool.fetchrow(
        "SELECT client_ref, therapist_id FROM projection_attendance WHERE session_id = $1", sid)
    assert attendance is not None
    assert tuple(attendance) == ("c-1", "t-ana")  # the live `scheduled` is folded again
    # A rebuild from the trail agrees with what the appends left.
    before = await snapshot(pool)
    await store.rebuild_projections()
    assert await snapshot(pool) == before


def test_the_export_marks_superseded_rows_and_takes_the_session_from_its_course() -> None:
    sid = "s-export"
    scheduled = details_event(sid, 1, events.Scheduled(
        client_ref="c-1", therapist_id="t-ana", start=AT, duration_minutes=50,
        modality=Modality.TELEHEALTH, risk_tier=RiskTier.STANDARD, grace_period_minutes=15))
    trail = [
        scheduled,
        blocked(sid, 2),  # a failed task's row: its task is not the session's
        details_event(sid, 3, events.TrailSuperseded(first=2, last=2)),
        responded(sid, 4),
        details_event(sid, 5, events.Closed(outcome=Outcome.REACHED, attempts=1)),
    ]

    bundle = export.fhir_bundle(sid, trail)

    resources = [entry["resource"] for entry in bundle["entry"]]
    audit_events = {r["id"]: r for r in resources if r["resourceType"] == "AuditEvent"}
    assert sorted(audit_events) == [f"{sid}-{n}" for n in range(1, 6)]  # every row
    assert audit_events[f"{sid}-2"]["outcomeDesc"].startswith("superseded: ")
    assert [r for r in resources if r.get("outcomeDesc")] == [audit_events[f"{sid}-2"]]
    assert [r for r in resources if r["resourceType"] == "Task"] == []
    [appointment] = [r for r in resources if r["resourceType"] == "Appointment"]
    assert appointment["status"] == "noshow"  # reached, after a missed session
