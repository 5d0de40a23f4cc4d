"""Run the MLLP listener on its own: `python -m missed_session.intake.listener`.

For a practice whose interface engine speaks MLLP and that runs the worker elsewhere (the
embedded stack starts the listener itself once `dev.py up` includes it). Reads the
service's `MSR_*` settings (Temporal, PostgreSQL, keys) and `MSR_INTAKE_*` (time zone,
port); stops cleanly on SIGINT and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from missed_session.application import Application
from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.intake import mllp
from missed_session.intake.service import build
from missed_session.intake.settings import IntakeSettings
from missed_session.log_setup import configure_logging


async def serve(settings: Settings, intake_settings: IntakeSettings, stop: asyncio.Event,
                started: Callable[[int], None] = lambda port: None) -> None:
    """Listen until `stop` is set; `started` is told the bound port."""
    async with Application(settings) as application:
        # Opened (and migrated, as the schema's owner where there is one) before listening.
        await application.pool()
        intake = build(application, intake_settings)
        server = await mllp.serve(
            intake, intake_settings.mllp_host, intake_settings.mllp_port,
            limit=intake_settings.max_message_bytes,
            frame_timeout=intake_settings.mllp_frame_timeout_seconds)
        try:
            started(server.sockets[0].getsockname()[1])
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()


def main() -> int:
    """Entry point: 0 after a clean stop, 2 for a configuration error."""
    try:
        settings = load_settings()
        intake_settings = IntakeSettings()
    except (ConfigurationError, ValueError) as error:
        print(f"configuration: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)  # errors by type (log_setup)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)

        def announce(port: int) -> None:
            print(f"MLLP listener on {intake_settings.mllp_host}:{port}", flush=True)

        await serve(settings, intake_settings, stop, announce)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
