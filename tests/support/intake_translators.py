"""Helpers first written for tests/test_intake_translators.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from missed_session.intake.fields import IntakeDefaults

DEFAULTS = IntakeDefaults(time_zone="America/Los_Angeles", country_code="1",
                          pseudonym_key=b"k", therapists={"TANA": "t-ana"})


START = datetime(2030, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=-8)))

