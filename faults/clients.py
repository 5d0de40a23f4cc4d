"""Scripted clients: each booked with a behaviour whose correct outcome is known in advance.

The protocol is shortened (5-minute grace period and spacing, two attempts) and compressed
by a time scale, so a whole ladder plays in seconds; the contact window is judged on the real
clock, so every client lives where it is midday now.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from bench.sessions import midday_time_zone
from missed_session.application.updates import Stage, send_update
from missed_session.domain.models import (
    CheckIn,
    ClientResponse,
    ContactPreferences,
    EmergencyContact,
    Outcome,
    ProtocolSettings,
    ResponseChannel,
    RiskTier,
    SessionBooking,
    workflow_id_for,
)
from missed_session.domain.models import Client as SessionClient
from workflows.session import SessionWorkflow

CALL_BACK_SECONDS = 2
"""How long after a voicemail a calling-back client rings the practice (real seconds)."""
CHECK_IN_AFTER_MINUTES = 1
"""Protocol minutes after the start at which an attending client checks in."""
THERAPIST_ID = "t-faults"
"""Every scripted session's therapist (on the roster of the notice scenario)."""
DELIVERY_PATIENCE = 300.0
"""Seconds the front desk keeps trying to deliver a message while Temporal is down."""


class Script(StrEnum):
    """How a client behaves."""

    ATTENDS = "attends"
    """Checks in one protocol minute after the start."""
    ANSWERS = "answers"
    """Answers the first call."""
    CALLS_BACK = "calls back"
    """Does not answer; calls back a moment after the voicemail."""
    UNREACHABLE_CONSENT = "unreachable, consent"
    """High risk, never answers; the emergency contact consented."""
    UNREACHABLE_NO_CONSENT = "unreachable, no consent"
    """Never answers; the emergency contact has not consented."""


EXPECTED: dict[Script, Outcome] = {
    Script.ATTENDS: Outcome.ATTENDED,
    Script.ANSWERS: Outcome.REACHED,
    Script.CALLS_BACK: Outcome.REACHED,
    Script.UNREACHABLE_CONSENT: Outcome.UNREACHABLE_ESCALATED,
    Script.UNREACHABLE_NO_CONSENT: Outcome.UNREACHABLE_ESCALATION_BLOCKED,
}
"""The one correct outcome of each script under the shortened protocol."""


@dataclass(frozen=True)
class ScriptedSession:
    """One booked session and what its client will do."""

    booking: SessionBooking
    script: Script
    expected: Outcome
    """The outcome the protocol must reach for this client (under this scenario's fault)."""

    @property
    def session_id(self) -> str:
        """The scheduling system's id."""
        return self.booking.session_id

    @property
    def phone(self) -> str:
        """The client's number (every scripted client has one)."""
        number = self.booking.client.phone
        assert number is not None
        return number


def protocol_settings(time_scale: float) -> ProtocolSettings:
    """The shortest protocol the models allow: two attempts of call and voicemail.

    A blocked escalation awaits a clinician one protocol hour, then closes as timed out.
    """
    return ProtocolSettings(grace_period_minutes=5, high_risk_grace_period_minutes=5,
                            attempt_spacing_minutes=5, max_attempts=2, clinician_wait_hours=1,
                            time_scale=time_scale)


def scripted_session(prefix: str, index: int, script: Script, *, start: datetime,
                     time_scale: float, expected: Outcome | None = None) -> ScriptedSession:
    """A fictitious client (555 numbers are reserved for fiction); `index` < 10,000.

    `expected`: the correct outcome when the scenario's fault changes it (a provider that
    refuses the emergency contact's message), else the script's own.
    """
    number = index
    contact = None
    if script is not Script.ATTENDS:
        consent = script is not Script.UNREACHABLE_NO_CONSENT
        contact = EmergencyContact(name="Sam", phone=f"+1555552{number:04d}", consent=consent,
                                   consent_date=date(2026, 1, 15) if consent else None)
    booking = SessionBooking(
        session_id=f"{prefix}-{index}",
        client=SessionClient(
            ref=f"c-{prefix}-{index}",
            first_name=("Robin", "Kai", "Noor", "Jules", "Ari")[index % 5],
            phone=f"+1555550{number:04d}",
            email=f"client{index}@example.org",
            time_zone=midday_time_zone(start),
            emergency_contact=contact,
            preferences=ContactPreferences(text=False, email=False),
        ),
        therapist_id=THERAPIST_ID,
        start=start,
        risk_tier=RiskTier.HIGH if script is Script.UNREACHABLE_CONSENT else RiskTier.STANDARD,
        protocol=protocol_settings(time_scale),
    )
    return ScriptedSession(booking, script, expected or EXPECTED[script])


async def tell(client: Client, session_id: str, name: str, message: object) -> bool:
    """Deliver a message as the front desk would: under one update id until it is taken.

    Returns False when the session had closed without it (the message came too late). The
    update id is chosen once, so a try that a restarting Temporal only admitted is sent
    again, never applied twice (`send_update`).
    """
    handle: WorkflowHandle[SessionWorkflow, object] = client.get_workflow_handle(
        workflow_id_for(session_id))
    if hasattr(getattr(SessionWorkflow, name), "__temporal_signal_definition"):
        deadline = time.monotonic() + DELIVERY_PATIENCE
        while True:
            try:
                await handle.signal(name, message)
                return True
            except RPCError as error:
                if error.status is RPCStatusCode.NOT_FOUND:
                    return False
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
    sent = await send_update(client, handle.id, name, message,
                             update_id=f"front-desk-{name}-{uuid.uuid4().hex}",
                             wait=timedelta(seconds=DELIVERY_PATIENCE))
    if sent.stage is Stage.NO_ANSWER:
        msg = f"the front desk could not deliver {name} to {session_id} ({sent.reason})"
        raise RuntimeError(msg)
    return sent.took_it or sent.stage is Stage.REFUSED


async def check_in(client: Client, session: ScriptedSession) -> bool:
    """The attending client arrives one protocol minute after the start."""
    at = session.booking.start + session.booking.protocol.scaled(CHECK_IN_AFTER_MINUTES)
    await asyncio.sleep(max(0.0, at.timestamp() - time.time()))
    return await tell(client, session.session_id, "check_in", CheckIn())


async def called_back(client: Client, session_id: str) -> bool:
    """The client returned the call (what the practice's phone system reports)."""
    return await tell(client, session_id, "client_responded",
                      ClientResponse(channel=ResponseChannel.CALL, responder="client",
                                     note="returned the call after the voicemail"))
