"""Helpers first written for tests/test_caring_contacts.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from missed_session.domain import events
from missed_session.domain.clients import (
    ClientRecord,
    ConsentEntry,
    ConsentSource,
    ConsentSubject,
    PhonePoint,
)
from missed_session.domain.models import Modality, Outcome, RiskTier
from missed_session.store.audit import AuditStore
from missed_session.store.clients import ClientDirectory

ZONE = "America/New_York"


PHONE = "+14155550188"


async def unresolved_session(pool: asyncpg.Pool, ref: str, session_id: str, at: datetime, *,
                             outcome: Outcome = Outcome.UNREACHABLE_ESCALATION_BLOCKED,
                             texts: bool = True) -> None:
    """A client in the directory and a closed session's trail, as the workflow writes it."""
    consents = [ConsentEntry(client_ref=ref, subject=ConsentSubject.TEXT, contact_point=PHONE,
                             granted=texts, effective_at=at - timedelta(days=30),
                             source=ConsentSource.INTAKE_FORM, recorded_by="t-ana")]
    await ClientDirectory(pool).add(
        ClientRecord(ref=ref, first_name="Robin", time_zone=ZONE,
                     phones=(PhonePoint(number=PHONE),)),
        source="test", recorded_by="t-ana", consents=consents)
    store = AuditStore(pool)
    for sequence, details in enumerate((
        events.Scheduled(client_ref=ref, therapist_id="t-ana", start=at, duration_minutes=50,
                         modality=Modality.IN_PERSON, risk_tier=RiskTier.HIGH,
                         grace_period_minutes=10),
        events.GracePeriodExpired(grace_period_minutes=10),
        events.Closed(outcome=outcome, attempts=3),
    ), start=1):
        assert (await store.record([events.new_event(session_id=session_id, sequence=sequence,
                                                   occurred_at=at, details=details)])).new

