"""`python -m missed_session.api`: the HTTP API on its own, beside workers elsewhere.

Configured like every other process (MSR_* settings for Temporal and PostgreSQL, MSR_API_*
for the API: host, port, token digests, public URL, body limit). It refuses to start
without tokens: an API that admits nobody is a configuration mistake worth naming.
"""

from __future__ import annotations

import asyncio
import sys

from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import Application
from missed_session.config import ConfigurationError, load_settings
from missed_session.lifecycle import run_until_stopped
from missed_session.log_setup import configure_logging


async def main() -> int:
    """Serve until a stop signal; 2 for a configuration the operator must fix."""
    try:
        settings = load_settings()
        api_settings = ApiSettings()
    except (ConfigurationError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    if not (api_settings.tokens or api_settings.clinician_tokens or api_settings.oidc_issuer):
        print("error: MSR_API_TOKENS is not set: make tokens with `starter.py new-token "
              "--scope scheduler|clinician|auditor` and configure their digests",
              file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    async with Application(settings) as application:
        server = ApiServer(create_app(application, api_settings),
                           host=api_settings.host, port=api_settings.port)
        url = await server.start()
        print(f"HTTP API on {url}", flush=True)
        try:
            await asyncio.Event().wait()  # a stop signal cancels this task
        finally:
            await server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(run_until_stopped(main))
