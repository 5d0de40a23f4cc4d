"""The simulated phone's script (development and demos): how a number behaves from now on."""

from __future__ import annotations

from missed_session.application.service import Application
from missed_session.channels.simulated import Behaviour, SimulatedPhone


async def script_phone(app: Application, number: str, behaviour: Behaviour,
                       callback_seconds: int | None = None) -> None:
    """Decide how `number` answers the simulated phone; raises UnavailableError."""
    await SimulatedPhone(await app.pool()).script(number, behaviour, callback_seconds)
