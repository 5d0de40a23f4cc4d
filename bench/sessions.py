"""Bookings for the benchmark and small helpers shared by the scenarios."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import asyncpg

from missed_session.channels.simulated import SimulatedPhone
from missed_session.domain.models import CallResult, SessionBooking

T = TypeVar("T")
R = TypeVar("R")


def midday_time_zone(now: datetime | None = None) -> str:
    """An IANA zone where it is about noon now, so contact-hour rules never defer outreach."""
    hour = (now or datetime.now(UTC)).hour
    offset = 12 - hour  # local = UTC + offset
    offset = (offset + 12) % 24 - 12  # in -12..11
    offset = max(-12, min(offset, 14))
    if offset == 0:
        return "Etc/GMT"
    # POSIX sign convention: Etc/GMT-5 is UTC+5.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def booking_data(session_id: str, start: datetime, *, time_zone: str, time_scale: float = 1.0,
                 consent: bool = True, index: int = 0) -> dict[str, Any]:
    """A fictitious booking as the scheduling system sends it (555-01xx numbers are fiction)."""
    return {
        "session_id": session_id,
        "client": {
            "ref": f"c-{session_id}",
            "first_name": ("Robin", "Kai", "Noor", "Jules", "Ari", "Mika")[index % 6],
            "phone": f"+1555550{index % 10_000:04d}",
            "email": f"client{index}@example.org",
            "time_zone": time_zone,
            "emergency_contact": {
                "name": "Sam",
                "phone": f"+1555551{index % 10_000:04d}",
                "consent": consent,
                "consent_date": date(2026, 1, 15).isoformat() if consent else None,
            },
        },
        "therapist_id": f"t-{index % 40}",
        "start": start.isoformat(),
        "protocol": {"time_scale": time_scale},
    }


def booking(session_id: str, start: datetime, **options: Any) -> SessionBooking:
    return SessionBooking.model_validate(booking_data(session_id, start, **options))


async def bounded(items: Iterable[T], concurrency: int,
                  work: Callable[[T], Awaitable[R]]) -> list[R]:
    """Run `work` over `items`, at most `concurrency` at once; results in no set order."""
    pending = iter(items)
    results: list[R] = []

    async def drain() -> None:
        for item in pending:
            results.append(await work(item))

    await asyncio.gather(*(drain() for _ in range(concurrency)))
    return results


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


class TimingPhone(SimulatedPhone):
    """The simulated phone, noting when each session's first outreach call began."""

    first_calls: dict[str, float]
    rung_again: set[str]
    """Sessions with a call placed again under its key (the step's activity was retried)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_calls = {}
        self.rung_again = set()
        self._keys: set[str] = set()

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        self.first_calls.setdefault(session_id, time.time())
        if key in self._keys:
            self.rung_again.add(session_id)
        self._keys.add(key)
        return await super().call(key, session_id, to)


FIRST_STEPS = ("outreach_attempted", "outreach_failed", "outreach_uncertain")
"""What the trail records a first call as (attempt 1)."""


async def first_outreach_delays(pool: asyncpg.Pool,
                                session_ids: Sequence[str]) -> dict[str, float]:
    """Per session: seconds from `grace_period_expired` to the first call, by the trail.

    The figure the service reports about itself (`missed_session_first_outreach_delay`, the
    console's "to first outreach"), for the burst to set beside the channel's own record.
    """
    rows = await pool.fetch(
        "SELECT g.session_id, extract(epoch FROM min(o.occurred_at) - g.occurred_at)::float8"
        " AS s FROM audit_events g JOIN audit_events o ON o.session_id = g.session_id"
        " AND o.event_type = ANY($2::text[]) AND (o.data->>'attempt')::int = 1"
        " WHERE g.event_type = 'grace_period_expired' AND g.session_id = ANY($1::text[])"
        " GROUP BY g.session_id, g.occurred_at", list(session_ids), list(FIRST_STEPS))
    return {row["session_id"]: float(row["s"]) for row in rows}
