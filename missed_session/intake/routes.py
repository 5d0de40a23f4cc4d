"""FastAPI routes for the standards intake; the HTTP API includes this router.

Bodies are read raw: the webhook signatures are over the bytes as sent, and HL7 is text.
Each route only hands the body to `StandardsIntake` (HL7) or `WebIntake` (FHIR, Cal.com,
Calendly) and returns its answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import fastapi
from fastapi import APIRouter, Request, Response
from fastapi.params import Depends

from missed_session.api.auth import BEARER, SCHEDULER, require
from missed_session.api.tokens import Scope
from missed_session.application import Application
from missed_session.intake.service import StandardsIntake, build
from missed_session.intake.settings import IntakeSettings
from missed_session.intake.web import HUB_SIGNATURE, WebIntake

FHIR_JSON = "application/fhir+json"
HL7_V2 = "x-application/hl7-v2+er7"


def router(intake: StandardsIntake, *, scheduler_auth: Sequence[Depends] = ()) -> APIRouter:
    """The intake routes.

    `scheduler_auth` guards the FHIR and HL7 routes; the webhooks authenticate by their
    signatures.
    """
    routes = APIRouter(tags=["scheduler standards"])
    limit = intake.settings.max_message_bytes
    web = WebIntake.over(intake.intake, intake.settings)
    scheduler_check = require(Scope.SCHEDULER) if scheduler_auth else None

    async def signed_or_scheduler(request: Request) -> None:
        """A notification's X-Hub-Signature (checked with the body), else the token."""
        if _hub_signature(request) is None and scheduler_check is not None:
            await scheduler_check(request, await BEARER(request))

    async def body_of(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _too_large(limit)
        body = await request.body()
        return _too_large(limit) if len(body) > limit else body

    @routes.post("/fhir/Appointment", dependencies=list(scheduler_auth),
                 summary="Create or update a session from a FHIR R4 Appointment",
                 response_class=Response)
    async def fhir_appointment(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        status, text = await web.fhir_appointment(body)
        return Response(text, status_code=status, media_type=FHIR_JSON)

    @routes.post("/fhir/subscription-notification",
                 dependencies=[fastapi.Depends(signed_or_scheduler)],
                 summary="FHIR Subscription rest-hook endpoint (R4 Backport IG); "
                         "X-Hub-Signature or the scheduler token",
                 response_class=Response)
    async def fhir_notification(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        signature = _hub_signature(request)
        if signature is not None:
            problem = web.authenticate_notification(body, signature)
            if problem is not None:
                return Response(_outcome_json("security", problem), status_code=401,
                                media_type=FHIR_JSON)
        status, text = await web.fhir_notification(body)
        return Response(text, status_code=status, media_type=FHIR_JSON)

    @routes.post("/hl7", dependencies=list(scheduler_auth),
                 summary="One HL7 v2 SIU message as the text body; answers its ACK",
                 response_class=Response)
    async def hl7_message(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        status, text = await intake.hl7(body)
        return Response(text, status_code=status, media_type=HL7_V2 if text else None)

    @routes.post("/webhooks/calcom", summary="Cal.com webhook (X-Cal-Signature-256)",
                 response_class=Response)
    async def calcom_webhook(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        status, text = await web.calcom(body, request.headers)
        return Response(text, status_code=status, media_type="application/json")

    @routes.post("/webhooks/calendly", summary="Calendly webhook (Calendly-Webhook-Signature)",
                 response_class=Response)
    async def calendly_webhook(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        status, text = await web.calendly(body, request.headers)
        return Response(text, status_code=status, media_type="application/json")

    _: Any = (fhir_appointment, fhir_notification, hl7_message, calcom_webhook,
              calendly_webhook)
    return routes


def standards_router(application: Application,
                     settings: IntakeSettings | None = None) -> APIRouter:
    """The routes for the HTTP API's `create_app(..., extra_routers=[...])`.

    The FHIR and HL7 routes take the API's scheduler token, the webhooks their signatures.
    """
    return router(build(application, settings), scheduler_auth=[SCHEDULER])


def _hub_signature(request: Request) -> str | None:
    return request.headers.get(HUB_SIGNATURE) or request.headers.get(f"{HUB_SIGNATURE}-256")


def _outcome_json(code: str, text: str) -> str:
    return json.dumps({"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": code, "diagnostics": text}]})


def _too_large(limit: int) -> Response:
    return Response(f'{{"outcome": "malformed", "message": "body larger than {limit} bytes"}}',
                    status_code=413, media_type="application/json")
