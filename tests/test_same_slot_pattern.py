"""Repeated no-shows in one weekly slot: counted in the client's time, named in the plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from missed_session.domain.follow_up import concerns_for, weekly_slot
from missed_session.domain.models import (
    AttendanceSummary,
    ConcernKind,
    FollowUpRequest,
    Outcome,
    RiskTier,
)
from missed_session.store.attendance import AttendanceStore

NEW_YORK = ZoneInfo("America/New_York")
# Tuesday 2026-11-24 09:00 in New York (EST, UTC-5).
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=NEW_YORK)


def test_weekly_slot_is_read_in_the_clients_time() -> None:
    assert weekly_slot(NOW, NEW_YORK) == "Tuesdays at 09:00"
    assert weekly_slot(NOW, UTC) == "Tuesdays at 14:00"
    # Across the November clock change the client's 09:00 is still 09:00 for them.
    before_dst_ends = datetime(2026, 10, 27, 9, 0, tzinfo=NEW_YORK)
    assert weekly_slot(before_dst_ends.astimezone(UTC), NEW_YORK) == "Tuesdays at 09:00"


async def _closed(pool: asyncpg.Pool, session_id: str, start: datetime, outcome: Outcome) -> None:
    await pool.execute(
        "INSERT INTO attendance (session_id, client_ref, therapist_id, start_at, outcome,"
        " closed_at) VALUES ($1, 'c-slot', 't-ana', $2, $3, $2)",
        session_id, start, outcome.value,
    )


async def test_store_counts_no_shows_in_the_same_weekly_slot(pool: asyncpg.Pool) -> None:
    week = timedelta(days=7)
    await _closed(pool, "tue-1", NOW - week, Outcome.UNREACHABLE_ESCALATION_BLOCKED)
    await _closed(pool, "tue-2", NOW - 4 * week, Outcome.REACHED)  # EDT then, same local hour
    await _closed(pool, "tue-attended", NOW - 2 * week, Outcome.ATTENDED)
    await _closed(pool, "wed", NOW - week + timedelta(days=1), Outcome.REACHED)
    await _closed(pool, "tue-10", NOW - 3 * week + timedelta(hours=1), Outcome.REACHED)
    await _closed(pool, "tue-old", NOW - 20 * week, Outcome.REACHED)  # outside 90 days

    summary = await AttendanceStore(pool).summary(
        client_ref="c-slot", session_id="now", until=NOW, current=Outcome.REACHED,
        time_zone="America/New_York",
    )

    assert summary.slot == "Tuesdays at 09:00"
    assert summary.same_slot_no_shows == 3  # this one, tue-1 and tue-2
    in_utc = await AttendanceStore(pool).summary(
        client_ref="c-slot", session_id="now", until=NOW, current=Outcome.REACHED
    )
    assert in_utc.same_slot_no_shows == 2  # tue-2 was at 13:00 UTC, not 14:00


def _request(outcome: Outcome = Outcome.REACHED) -> FollowUpRequest:
    return FollowUpRequest(
        session_id="now", client_ref="c-slot", therapist_id="t-ana",
        risk_tier=RiskTier.STANDARD, outcome=outcome, session_start=NOW, escalated=False,
    )


def _attendance(same_slot: int) -> AttendanceSummary:
    return AttendanceSummary(
        window_days=90, sessions=4, no_shows=same_slot, consecutive_no_shows=1,
        late_arrivals=0, same_slot_no_shows=same_slot, slot="Tuesdays at 09:00",
    )


def test_a_repeated_slot_is_a_logistical_concern_with_its_evidence() -> None:
    reasons = [c.reason for c in concerns_for(_request(), _attendance(3))
               if c.kind is ConcernKind.LOGISTICAL]
    assert reasons == ["3 no-shows on Tuesdays at 09:00 (client's time) in the last 90 days"]


def test_one_missed_slot_is_not_a_pattern() -> None:
    kinds = {c.kind for c in concerns_for(_request(), _attendance(1))}
    assert ConcernKind.LOGISTICAL not in kinds
