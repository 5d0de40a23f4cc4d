"""The console served on its own (the demo day) or beside the HTTP API (`dev.py up`).

`console_app` is the console alone, for a stack that runs no HTTP API; `demo_sign_in` gives
a roster clinician a password made for this run, so a person can sign in at once.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI

from missed_session.application import console as cases
from missed_session.application.service import Application
from missed_session.console.routes import console_router


def console_app(application: Application, *, secure_cookies: bool = True) -> FastAPI:
    """An ASGI app serving only the console (under /console)."""
    app = FastAPI(title="Clinician console", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(console_router(application, secure_cookies=secure_cookies))
    return app


async def demo_sign_in(application: Application, clinician_id: str) -> str | None:
    """A fresh password for `clinician_id` (None if they are not on the roster in force)."""
    password = secrets.token_urlsafe(12)
    result = await cases.set_password(application, clinician_id, password)
    return password if result.ok else None
