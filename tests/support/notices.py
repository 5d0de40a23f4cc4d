"""Helpers first written for tests/test_notices.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from temporalio.testing import WorkflowEnvironment

ANA, LEE, MAYA = "+14155550101", "+14155550102", "+14155550104"


ROSTER = f"""
[roster]
time_zone = "America/Los_Angeles"

[roster.clinicians.t-ana]
role = "therapist"
sms = "{ANA}"
email = "ana@clinic.example"
supervisor = "s-maya"

[roster.clinicians.oc-lee]
role = "on_call_clinician"
sms = "{LEE}"

[roster.clinicians.s-maya]
role = "clinical_supervisor"
sms = "{MAYA}"

[[roster.on_call]]
clinician = "oc-lee"
"""


async def texts_to(pool: asyncpg.Pool, number: str, kind: str = "text") -> list[str]:
    """What the clinician received (texts to a number, or email to an address)."""
    address = "ana@clinic.example" if kind == "email" and number == ANA else number
    rows = await pool.fetch(
        "SELECT body FROM sim_phone_log WHERE to_number = $1 AND kind = $2"
        " ORDER BY placed_at", address, kind)
    return [row["body"] for row in rows]


def about(bodies: list[str], words: str) -> list[str]:
    return [body for body in bodies if words in body]


async def sleep_until(env: WorkflowEnvironment, when: datetime) -> None:
    await env.sleep(when - await env.get_current_time())

