"""Helpers first written for tests/test_outreach_rules.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from missed_session.domain.models import ClinicianDecision, SessionBooking
from tests.support.factories import booking, booking_data, daytime

NEW_YORK = "America/New_York"


async def book_with(
    env: WorkflowEnvironment, *, preferences: dict[str, Any] | None = None,
    contact: dict[str, Any] | bool | None = True, hour: int = 10, minute: int = 0,
    time_zone: str = "America/Los_Angeles", **overrides: Any,
) -> SessionBooking:
    """A booking at `hour:minute` client time, at least an hour ahead of the server clock."""
    data = booking_data()
    client = {**data["client"], "time_zone": time_zone}
    if preferences is not None:
        client["preferences"] = preferences
    if contact is None:
        client["emergency_contact"] = None
    elif isinstance(contact, dict):
        client["emergency_contact"] = contact
    start = daytime(await env.get_current_time() + timedelta(hours=1), hour=hour,
                    time_zone=time_zone) + timedelta(minutes=minute)
    return booking(**{**overrides, "client": client, "start": start.isoformat()})


def decision(**fields: str) -> ClinicianDecision:
    return ClinicianDecision(**{"clinician_id": "t-ana", "reason": "spoke to GP", **fields})

