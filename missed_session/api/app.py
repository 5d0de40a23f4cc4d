"""The HTTP API as an ASGI app: the session routes, and the place other routers join.

`create_app` takes the routers of the other entry points that share this server (the
standards intake's FHIR, HL7 and scheduler webhooks; the inbound SMS webhooks), so one
process, one port and one set of tokens serve them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from missed_session.api import errors, inbound, routes
from missed_session.api.oidc import OidcClinicians
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import TokenCheck
from missed_session.application.service import Application
from missed_session.application.sessions import InFlight
from missed_session.application.text_deliverer import TextDeliverer
from missed_session.codec.auth import OidcSettings

TITLE = "Missed-session response"


def create_app(application: Application, settings: ApiSettings,
               extra_routers: Sequence[APIRouter] = (), *,
               deliver_kept_texts: bool = True) -> FastAPI:
    """The API over `application`; `extra_routers` are included after the session routes.

    While it is served (its lifespan), the deliverer hands kept inbound texts to their
    sessions (`api.state.deliverer`), unless `deliver_kept_texts` is False.
    """
    deliverer = TextDeliverer(application)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        application.in_flight = in_flight = InFlight()  # client messages answered "kept"
        try:
            if not deliver_kept_texts:
                yield
                return
            async with deliverer.running():
                yield
        finally:
            await in_flight.close()
            application.in_flight = None

    api = FastAPI(title=TITLE, version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  openapi_url="/openapi.json",
                  description="Book sessions, send their news, read where they are and "
                              "their audit trail. Bearer tokens, one scope per caller kind.")
    api.state.application = application
    api.state.deliverer = deliverer
    api.state.tokens = TokenCheck(settings.tokens, settings.clinician_tokens)
    api.state.oidc = None if settings.oidc_issuer is None else OidcClinicians(
        OidcSettings(issuer=settings.oidc_issuer, audience=settings.oidc_audience or "",
                     jwks_url=settings.oidc_jwks_url), settings.oidc_subjects)
    errors.install(api)
    api.add_middleware(errors.BodyLimit, limit=settings.max_body_bytes)
    api.include_router(routes.router())
    api.include_router(inbound.router(application, settings))
    for router in extra_routers:  # standards intake (FHIR/HL7/webhooks), inbound SMS, ...
        api.include_router(router)
    serve_docs(api)
    return api


STATIC = Path(__file__).resolve().parent / "static"
"""Swagger UI's bundle and stylesheet (swagger-ui-dist, Apache-2.0: the licence files beside
them), served by the API itself so that /docs works offline."""
SWAGGER_UI = "5.32.0"


def serve_docs(api: FastAPI) -> None:
    """`/docs`: Swagger UI over `/openapi.json`, its assets from this package, no CDN."""
    api.mount("/docs/static", StaticFiles(directory=STATIC), name="docs-static")

    @api.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{TITLE} - API",
            swagger_js_url=f"/docs/static/swagger-ui-{SWAGGER_UI}-bundle.js",
            swagger_css_url=f"/docs/static/swagger-ui-{SWAGGER_UI}.css",
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from outside
        )
