"""Renamed event types: old trails keep their stored names and still read, verify and show.

`notice_escalated` became `notice_climbed` (a notice climbs its ladder; escalation is only
the emergency contact). Stored rows are never rewritten, since the hash chain covers their
bytes: readers upcast the old name, verification hashes what is stored, and a retried
append of an input recorded before the rename is the same row, not a conflict.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from missed_session.audit.verify import verify_session
from missed_session.console.words import describe
from missed_session.domain import events
from missed_session.domain.models import AuditEvent, AuditEventType, upcast, upcast_name
from missed_session.store.audit import AuditStore

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOTICE = "s-1/no-show-alert"


def climb(name: AuditEventType, sequence: int = 1) -> AuditEvent:
    return AuditEvent(session_id=NOTICE, sequence=sequence, event_type=name,
                      occurred_at=AT + timedelta(minutes=5 * sequence),
                      data={"round": 1, "step": sequence + 1, "target": "on_call"})


def test_the_old_name_reads_as_the_new() -> None:
    assert upcast(AuditEventType.NOTICE_ESCALATED) is AuditEventType.NOTICE_CLIMBED
    assert upcast(AuditEventType.NOTICE_SENT) is AuditEventType.NOTICE_SENT
    assert upcast_name("notice_escalated") == "notice_climbed"
    assert upcast_name("notice_climbed") == "notice_climbed"
    assert upcast_name("no_such_type") == "no_such_type"
    for name in (AuditEventType.NOTICE_ESCALATED, AuditEventType.NOTICE_CLIMBED):
        assert events.read(climb(name)) == events.NoticeClimbed(round=1, step=2,
                                                                target="on_call")


def test_new_climbs_are_written_under_the_new_name() -> None:
    event = events.new_event(session_id=NOTICE, sequence=2, occurred_at=AT,
                             details=events.NoticeClimbed(round=1, step=2, target="on_call"))
    assert event.event_type.value == "notice_climbed"


def test_the_console_says_the_same_for_both_names() -> None:
    old, new = climb(AuditEventType.NOTICE_ESCALATED), climb(AuditEventType.NOTICE_CLIMBED)
    assert describe(old) == describe(new)
    assert "climbs" in describe(new)


async def test_an_old_trail_keeps_its_bytes_verifies_and_reads(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    old, new = climb(AuditEventType.NOTICE_ESCALATED), climb(AuditEventType.NOTICE_CLIMBED, 2)
    assert (await store.record([old])).new  # recorded before the rename
    assert (await store.record([new])).new  # after it: one trail, both names
    # A retried activity whose input was recorded before the rename: the same row.
    assert not (await store.record([old])).new
    rows = await store.chain_rows(NOTICE)
    assert [row.event_type for row in rows] == ["notice_escalated", "notice_climbed"]
    assert (await verify_session(store, NOTICE)).problem is None
    trail = await store.trail(NOTICE)
    assert [upcast(event.event_type) for event in trail] == [AuditEventType.NOTICE_CLIMBED] * 2
    assert all(isinstance(events.read(event), events.NoticeClimbed) for event in trail)
