"""The HTTP API as an ASGI app: the session routes, and the place other routers join.

`create_app` takes the routers of the other entry points that share this server (the
standards intake's FHIR, HL7 and scheduler webhooks; the inbound SMS webhooks), so one
process, one port and one set of tokens serve them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from missed_session.api import errors, inbound, routes
from missed_session.api.settings import ApiSettings
from missed_session.api.tokens import TokenCheck
from missed_session.application.service import Application

TITLE = "Missed-session response"


def create_app(application: Application, settings: ApiSettings,
               extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The API over `application`; `extra_routers` are included after the session routes."""
    api = FastAPI(title=TITLE, version="1", docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Book sessions, send their news, read where they are and "
                              "their audit trail. Bearer tokens, one scope per caller kind.")
    api.state.application = application
    api.state.tokens = TokenCheck(settings.tokens)
    errors.install(api)
    api.add_middleware(errors.BodyLimit, limit=settings.max_body_bytes)
    api.include_router(routes.router())
    api.include_router(inbound.router(application, settings))
    for router in extra_routers:  # standards intake (FHIR/HL7/webhooks), inbound SMS, ...
        api.include_router(router)
    return api
