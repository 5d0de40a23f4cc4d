"""Inbound from providers: Twilio's message webhook and call status callbacks, signed webhooks.

All authenticate by the provider's signature, not a bearer token: Twilio's with the SDK's
`RequestValidator` over the URL it called and the form fields, the webhook channel's with
the same HMAC scheme its outbound requests carry. The sender's number and the text are
never logged or echoed; of a status callback only the call's SID, status and
answering-machine verdict are read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from missed_session.api.bodies import Answer
from missed_session.api.errors import ApiError
from missed_session.api.settings import ApiSettings
from missed_session.application.call_status import record_call_status
from missed_session.application.inbound import (
    LONGEST_ACCEPTED,
    InboundAnswer,
    neutralised,
    receive_text,
)
from missed_session.application.results import ResultKind
from missed_session.application.service import Application
from missed_session.channels import webhook
from missed_session.domain.models import PhoneNumber
from missed_session.store.kept_texts import InboundProvider

log = structlog.get_logger(__name__)

TWIML = "application/xml"
TWILIO_SIGNATURE = "X-Twilio-Signature"


class InboundText(BaseModel):
    """A text as the signed webhook channel's receiver forwards it."""

    from_: PhoneNumber = Field(alias="from", description="the sender, E.164")
    body: str = Field(max_length=LONGEST_ACCEPTED,
                      description="the text as sent (any characters; control characters are "
                                  "neutralised before it is kept or delivered)")
    id: str | None = Field(default=None, max_length=100,
                           description="the provider's message id (deduplicates)")


class InboundView(BaseModel):
    """What the webhook channel's receiver hears back."""

    kind: str = Field(description="opt_out, help or response")
    outcome: str = Field(description="applied, refused, not_found, or kept (no session took "
                                     "it yet: kept and delivered later)")
    reply: str | None = Field(description="the text to send back to the sender, if any")
    sessions: int = Field(description="open sessions the text was delivered to")


class _ContainedRoute(APIRoute):
    """A route whose unexpected failure is answered here, logged by its type only.

    An exception that leaves a route reaches Starlette's server-error middleware, which
    re-raises it after answering, so the server logs its traceback, and an error's message
    may quote the text (pydantic's do). A client's text must never reach a log line.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def contained(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError:
                raise
            except Exception as error:  # any failure: answered without detail
                log.error("inbound request failed", route=self.path,
                          error_type=type(error).__name__)
                return JSONResponse(
                    Answer(kind="error", message="internal error; the request may not have "
                           "been applied (it is safe to send again)").model_dump(),
                    status_code=500)

        return contained


def router(application: Application, settings: ApiSettings) -> APIRouter:
    """The inbound text routes."""
    routes = APIRouter(prefix="/inbound", tags=["inbound texts"], route_class=_ContainedRoute)

    @routes.post("/twilio", summary="Twilio's inbound message webhook (TwiML answer)",
                 response_class=Response,
                 responses={200: {"content": {TWIML: {}}, "description": "TwiML"},
                            403: {"model": Answer}, 422: {"model": Answer},
                            503: {"model": Answer}})
    async def twilio(request: Request) -> Response:
        form = await _twilio_form(request)
        try:
            text = InboundText.model_validate({"from": form.get("From", ""),
                                               "body": form.get("Body", ""),
                                               "id": form.get("MessageSid")})
        except ValidationError as error:
            raise _bad(error) from None
        answer = await receive_text(application, phone=text.from_, body=text.body,
                                    message_id=text.id, channel=InboundProvider.TWILIO)
        if answer.result.kind is ResultKind.UNAVAILABLE and not answer.kept:
            raise ApiError(503, "unavailable", "try again later")
        twiml = MessagingResponse()
        if answer.reply is not None:
            twiml.message(answer.reply)
        return Response(str(twiml), media_type=TWIML)

    @routes.post("/twilio/calls", summary="Twilio's status callback for a call the service placed",
                 status_code=204, response_class=Response,
                 responses={403: {"model": Answer}, 422: {"model": Answer},
                            503: {"model": Answer}})
    async def twilio_call_status(request: Request) -> Response:
        form = await _twilio_form(request)
        result = await record_call_status(
            application, form.get("CallSid", ""), form.get("CallStatus", ""),
            form.get("AnsweredBy") or None,
        )
        if result.kind is ResultKind.BAD_INPUT:
            raise ApiError(422, "bad_input", result.message)
        if result.kind is ResultKind.UNAVAILABLE:
            # By default Twilio does not retry it: the waiting step's polling covers it.
            raise ApiError(503, "unavailable", "try again later")
        return Response(status_code=204)

    async def _twilio_form(request: Request) -> dict[str, str]:
        """The form Twilio posted, once its X-Twilio-Signature is verified."""
        token = application.settings.twilio_auth_token
        if token is None:
            raise ApiError(403, "forbidden", "no Twilio auth token is configured")
        # Twilio posts application/x-www-form-urlencoded (no multipart parser needed).
        form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace"),
                              keep_blank_values=True))
        url = _called_url(request, settings)
        signature = request.headers.get(TWILIO_SIGNATURE, "")
        if not RequestValidator(token.get_secret_value()).validate(url, form, signature):
            raise ApiError(403, "forbidden", "the Twilio signature does not match")
        return form

    @routes.post("/webhook", response_model=InboundView,
                 summary="An inbound text from the signed webhook channel's receiver",
                 responses={403: {"model": Answer}, 422: {"model": Answer},
                            503: {"model": Answer}})
    async def signed_webhook(request: Request) -> JSONResponse:
        secret = application.settings.webhook_secret
        if secret is None:
            raise ApiError(403, "forbidden", "no webhook secret is configured")
        body = await request.body()
        timestamp = request.headers.get(webhook.TIMESTAMP_HEADER, "")
        signature = request.headers.get(webhook.SIGNATURE_HEADER, "")
        if not webhook.verify(secret.get_secret_value().encode(), timestamp, body, signature,
                              now=time.time()):
            raise ApiError(403, "forbidden", "the signature does not match or is too old")
        text = _webhook_text(body)
        answer = await receive_text(application, phone=text.from_, body=text.body,
                                    message_id=text.id, channel=InboundProvider.WEBHOOK)
        if answer.result.kind is ResultKind.UNAVAILABLE and not answer.kept:
            raise ApiError(503, "unavailable", "try again later")
        return JSONResponse(_view(answer).model_dump())

    _: Any = (twilio, twilio_call_status, signed_webhook)
    return routes


def _webhook_text(body: bytes) -> InboundText:
    """The webhook channel's text, or the 422 naming the field."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("body"), str):
            # JSON can carry a lone surrogate, which no model accepts as a string
            data["body"] = neutralised(data["body"])
        return InboundText.model_validate(data)
    except (ValueError, ValidationError) as error:
        raise _bad(error) from None


def _called_url(request: Request, settings: ApiSettings) -> str:
    """The URL the provider signed: the configured public address, else the one called."""
    if settings.public_url is None:
        return str(request.url)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return settings.public_url.rstrip("/") + path


def _bad(error: ValueError | ValidationError) -> ApiError:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        return ApiError(422, "bad_input", f"{field}: {first['msg']}")
    return ApiError(422, "bad_input", "body: not valid JSON")


def _view(answer: InboundAnswer) -> InboundView:
    outcome = "kept" if answer.kept else answer.result.kind.value
    return InboundView(kind=answer.kind.value, outcome=outcome,
                       reply=answer.reply, sessions=len(answer.sessions))
