"""What every console page shares: templates, the signed-in viewer, CSRF, security headers.

Cookies are HTTP-only, SameSite=Strict and (unless told otherwise for plain-HTTP loopback
development) Secure. Every form carries the browser session's CSRF token; the sign-in form,
before there is a session, a double-submit token in its own short-lived cookie.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import structlog
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from missed_session.application import console as cases
from missed_session.application.service import Application
from missed_session.console import words as plain
from missed_session.domain.access import Viewer

PACKAGE = Path(__file__).resolve().parent
SESSION_COOKIE = "msr_console"
SIGN_IN_COOKIE = "msr_console_sign_in"
"""The sign-in form's double-submit CSRF token (there is no session yet to hold one)."""
PREFIX = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                               "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Health data is neither cached, framed, nor sent on as a referrer; no inline script runs."""

log = structlog.get_logger(__name__)


def _at(value: datetime | None, zone: ZoneInfo | str) -> str:
    """A time in a zone, as a clinician reads it."""
    if value is None:
        return "-"
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    return value.astimezone(zone).strftime("%a %d %b %H:%M %Z")


def _words(value: str) -> str:
    """`escalate_now` -> `escalate now`: the vocabulary, readable."""
    return value.replace("_", " ")


def _hm(value: datetime | None, zone: ZoneInfo | str) -> str:
    """A time of day in a zone (today's events)."""
    if value is None:
        return "-"
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    return value.astimezone(zone).strftime("%H:%M")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined)
    environment.filters["at"] = _at
    environment.filters["hm"] = _hm
    environment.filters["words"] = _words
    environment.filters["describe"] = plain.describe
    environment.filters["call_came"] = plain.call_came
    environment.filters["status_words"] = plain.status
    environment.filters["outcome_words"] = plain.outcome
    environment.filters["duration"] = plain.duration
    environment.filters["notice_name"] = plain.notice_name
    environment.filters["channel"] = plain.channel
    environment.filters["via"] = plain.via
    environment.globals["did"] = plain.did
    environment.globals["prefix"] = PREFIX
    environment.globals["TARGET"] = plain.TARGET
    environment.globals["DECISION"] = plain.DECISION
    return environment


@dataclass
class Web:
    """The console's shared state: the application, templates, clock, cookie policy."""

    app: Application
    secure_cookies: bool
    clock: Callable[[], datetime]
    templates: jinja2.Environment

    @classmethod
    def create(cls, app: Application, *, secure_cookies: bool,
               clock: Callable[[], datetime]) -> Web:
        """The console over `app`."""
        return cls(app, secure_cookies, clock, _environment())

    def page(self, name: str, context: Mapping[str, Any], *, status: int = 200,
             headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """Render a template (escaped) with the security headers."""
        body = self.templates.get_template(name).render(
            {"prefix": PREFIX, "done": None, "error": None, **context})
        return HTMLResponse(body, status_code=status,
                            headers={**SECURITY_HEADERS, **(headers or {})})

    async def viewer(self, request: Request) -> Viewer | None:
        """The signed-in viewer, or None (no cookie, expired, off the roster)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        return await cases.viewer(self.app, token, self.clock())

    def to_sign_in(self, request: Request) -> Response:
        """Send someone not signed in to the sign-in page (a live region follows its header)."""
        target = f"{PREFIX}/sign-in"
        if request.headers.get("X-Live"):
            return Response(status_code=204, headers={"X-Live-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def form(self, request: Request, who: Viewer) -> dict[str, str] | None:
        """The posted form if its CSRF token is this browser session's, else None."""
        form = await request.form()
        values = {key: value for key, value in form.items() if isinstance(value, str)}
        sent = values.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), who.csrf_token.encode()):
            log.warning("console form refused: CSRF token missing or wrong",
                        clinician_id=who.clinician_id, path=request.url.path)
            return None
        return values

    def unavailable(self, message: str) -> HTMLResponse:
        """The answer when a server behind the console cannot be reached."""
        return self.page("refused.html", {"who": None, "title": "Unavailable",
                                          "message": message}, status=503)

    def csrf_refused(self, who: Viewer | None) -> HTMLResponse:
        """The answer to a forged or stale form: nothing was done."""
        return self.page("refused.html", {
            "who": who, "title": "Form refused",
            "message": "This form was not sent by your signed-in console (a forged or stale "
                       "form). Nothing was done; reload the page and try again."}, status=403)

    def set_session_cookie(self, response: Response, token: str, expires: datetime) -> None:
        """The sign-in cookie: HTTP-only, SameSite=Strict, Secure, gone at expiry."""
        response.set_cookie(SESSION_COOKIE, token, expires=expires, path=PREFIX,
                            httponly=True, samesite="strict", secure=self.secure_cookies)

    def set_sign_in_cookie(self, response: Response, token: str) -> None:
        """The sign-in form's double-submit token, as its cookie (15 minutes)."""
        response.set_cookie(SIGN_IN_COOKIE, token, max_age=900, path=PREFIX, httponly=True,
                            samesite="strict", secure=self.secure_cookies)


def new_token() -> str:
    """A random token for a form or a cookie."""
    return secrets.token_urlsafe(32)
