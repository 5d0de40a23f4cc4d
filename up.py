"""The embedded stack with the HTTP API and no demo day: `python3 dev.py up`.

For a person who wants to connect a scheduling system or an SMS provider on one machine:
PostgreSQL (embedded), the Temporal dev server with its Web UI, the codec server, the
worker and the HTTP API, addresses printed, until Ctrl-C or SIGTERM stops everything this
process started (in reverse order, without a traceback).

Without MSR_API_TOKENS a token per scope is made for this run and printed (only their
digests are held); with it, the configured tokens apply.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from fastapi import APIRouter

from demo import embedded_stack
from missed_session.api.app import create_app
from missed_session.api.auth import SCHEDULER
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import Scope, digest, new_token
from missed_session.application import Application
from missed_session.codec.server import UI_SECRET_FILE, ui_endpoint
from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.console.routes import console_router
from missed_session.intake import mllp
from missed_session.intake.routes import router
from missed_session.intake.service import StandardsIntake, build
from missed_session.intake.settings import IntakeSettings
from missed_session.lifecycle import HeldError, run_until_stopped
from missed_session.log_setup import configure_logging


def other_routers(application: Application, intake: StandardsIntake) -> Sequence[APIRouter]:
    """Routers of the other entry points served beside the session routes.

    The clinician console (under /console) and the standards intake (FHIR Appointment and
    Subscription, HL7 v2 over HTTP, Cal.com and Calendly webhooks; its MLLP listener is
    started beside the API).
    """
    return (console_router(application), router(intake, scheduler_auth=[SCHEDULER]))


def _tokens(api_settings: ApiSettings) -> tuple[ApiSettings, dict[Scope, str]]:
    if api_settings.tokens:
        return api_settings, {}
    made = {scope: new_token() for scope in Scope}
    configured = api_settings.model_copy(
        update={"tokens": {scope: [digest(token)] for scope, token in made.items()}})
    return configured, made


def _addresses(settings: Settings, api_url: str, made: dict[Scope, str]) -> list[str]:
    ui = f"http://localhost:{settings.ui_port}"
    lines = [
        f"Temporal:     {settings.temporal_address} (namespace {settings.temporal_namespace})",
        f"Web UI:       {ui}/namespaces/{settings.temporal_namespace}/workflows",
        "codec server: "
        + ui_endpoint(port=settings.codec_server_port, secret="<SECRET>")  # noqa: S106
        + " (enter it once in the Web UI's Codec Server settings, <SECRET> read from "
        f"{settings.data_dir / UI_SECRET_FILE}; docs/security.md)",
        f"HTTP API:     {api_url} (OpenAPI {api_url}/openapi.json, docs {api_url}/docs)",
        f"inbound SMS:  {api_url}/inbound/twilio, {api_url}/inbound/webhook",
        f"console:      {api_url.replace('127.0.0.1', 'localhost')}/console (accounts: "
        "starter.py roster load, then starter.py console set-password <clinician>)",
    ]
    if settings.metrics_port:
        lines.append(f"metrics:      http://127.0.0.1:{settings.metrics_port}/metrics")
    lines += [f"{scope.value} token (this run only): {token}" for scope, token in made.items()]
    return lines


async def main(argv: list[str] | None = None) -> int:
    """Bring the stack up, print where everything is, stop on SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.parse_args(argv)
    try:
        settings = load_settings()
        api_settings, made = _tokens(ApiSettings())
        intake_settings = IntakeSettings()
    except (ConfigurationError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, "warning")
    print(f"starting PostgreSQL (embedded, {settings.data_dir}/postgres), Temporal and the "
          "worker ...", flush=True)
    ports = {"MSR_API_PORT": api_settings.port, "MSR_INTAKE_MLLP_PORT": intake_settings.mllp_port}
    try:
        return await _serve(settings, api_settings, intake_settings, made, ports)
    except HeldError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


async def _serve(settings: Settings, api_settings: ApiSettings, intake_settings: IntakeSettings,
                 made: dict[Scope, str], ports: dict[str, int]) -> int:
    """The stack, the API and the MLLP listener, until a stop signal cancels the wait."""
    async with embedded_stack(settings, more_ports=ports) as env, \
            Application(settings, client=env.client) as application:
        await application.pool()  # opened (and migrated) before anything listens
        intake = build(application, intake_settings)
        api = create_app(application, api_settings, other_routers(application, intake))
        server = ApiServer(api, host=api_settings.host, port=api_settings.port)
        url = await server.start()
        listener = await mllp.serve(intake, intake_settings.mllp_host,
                                    intake_settings.mllp_port,
                                    limit=intake_settings.max_message_bytes,
                                    frame_timeout=intake_settings.mllp_frame_timeout_seconds)
        host, port = listener.sockets[0].getsockname()[:2]
        try:
            print("\n".join(["the stack is up:", *_addresses(settings, url, made),
                             f"HL7 v2 MLLP: {host}:{port} (docs/integration-standards.md)",
                             "press Ctrl-C (or send SIGTERM) to stop"]), flush=True)
            await asyncio.Event().wait()  # a stop signal cancels this task
        finally:
            print("stopping ...", flush=True)
            listener.close()
            await listener.wait_closed()
            await server.stop()
    return 0


def run() -> int:
    """Run until stopped; say so once everything this process started has stopped."""
    code = run_until_stopped(main)
    print("stopped", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(run())
