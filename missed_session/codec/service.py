"""The stand-alone codec server of a deployment: `python -m missed_session.codec.service`.

Unlike the embedded stack's (demo.py), it authorises by OIDC access tokens alone (the Web
UI signs users in and forwards their tokens); the loopback-plus-Origin rule is off, since
in a container network every caller is "remote" and an Origin header proves nothing. It
refuses to start without an issuer and audience. `/healthz` answers without decrypting
anything, for the container's health check.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from missed_session.codec.auth import OidcSettings, OidcTokenValidator
from missed_session.codec.server import CodecServer
from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.log_setup import configure_logging
from missed_session.temporal.client import codec_for

log = structlog.get_logger(__name__)


def validator_for(settings: Settings) -> OidcTokenValidator:
    """The token validator the settings describe; refuses settings without an issuer."""
    if settings.codec_oidc_issuer is None or settings.codec_oidc_audience is None:
        msg = ("setting codec_oidc_issuer: required for the stand-alone codec server, with"
               " codec_oidc_audience (it accepts OIDC access tokens and nothing else)")
        raise ConfigurationError(msg)
    return OidcTokenValidator(OidcSettings(
        issuer=settings.codec_oidc_issuer,
        audience=settings.codec_oidc_audience,
        jwks_url=settings.codec_oidc_jwks_url,
    ))


async def _healthy(request: web.Request) -> web.Response:
    del request
    return web.Response(text="ok")


def build_app(settings: Settings) -> web.Application:
    """The codec endpoints behind token validation, and the health endpoint."""
    if not settings.encryption_keys:
        msg = ("setting encryption_keys: required for the stand-alone codec server (the"
               " workers' keys; without them it would make a key of its own and decode nothing)")
        raise ConfigurationError(msg)
    server = CodecServer(codec_for(settings), ui_origins=settings.codec_ui_origins,
                         token=None, authorise=validator_for(settings).authorise)
    app = server.app()
    app.router.add_get("/healthz", _healthy)
    return app


async def main() -> None:
    """Serve until interrupted."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.codec_server_host, settings.codec_server_port).start()
    log.info("codec_server_started", host=settings.codec_server_host,
             port=settings.codec_server_port, issuer=settings.codec_oidc_issuer)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
