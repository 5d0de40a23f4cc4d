"""Webhook signatures: Cal.com's X-Cal-Signature-256 and Calendly's Calendly-Webhook-Signature.

Both are HMAC-SHA256 over the raw body as received (never a re-serialised JSON), compared
in constant time. Calendly also signs a timestamp, which bounds how old a replayed request
may be.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

CALENDLY_TOLERANCE = timedelta(minutes=3)
"""How far a Calendly signature's timestamp may be from our clock (Calendly's guidance)."""


class SignatureError(ValueError):
    """The request is not signed by the configured secret; the message says why."""


def verify_calcom(secret: str, body: bytes, header: str | None) -> None:
    """Check X-Cal-Signature-256 (hex HMAC-SHA256 of the body, optionally `sha256=`)."""
    if not header:
        msg = "X-Cal-Signature-256: missing"
        raise SignatureError(msg)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    given = header.strip().removeprefix("sha256=")
    if not hmac.compare_digest(expected, given.lower()):
        msg = "X-Cal-Signature-256: does not match the body"
        raise SignatureError(msg)


def sign_calcom(secret: str, body: bytes) -> str:
    """The header value Cal.com sends for `body` (used by tests and the docs' example)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_calendly(signing_key: str, body: bytes, header: str | None, now: datetime,
                    tolerance: timedelta = CALENDLY_TOLERANCE) -> None:
    """Check `Calendly-Webhook-Signature: t=<unix>,v1=<hex>` over `<t>.<body>`."""
    if not header:
        msg = "Calendly-Webhook-Signature: missing"
        raise SignatureError(msg)
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, signature = parts.get("t", "").strip(), parts.get("v1", "").strip()
    if not timestamp.isdigit() or not signature:
        msg = "Calendly-Webhook-Signature: expected t=<unix time>,v1=<signature>"
        raise SignatureError(msg)
    signed = timestamp.encode() + b"." + body
    expected = hmac.new(signing_key.encode(), signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        msg = "Calendly-Webhook-Signature: does not match the body"
        raise SignatureError(msg)
    age = abs(now.timestamp() - int(timestamp))
    if age > tolerance.total_seconds():
        msg = (f"Calendly-Webhook-Signature: timestamp is {int(age)} s from now "
               f"(tolerance {int(tolerance.total_seconds())} s)")
        raise SignatureError(msg)


def sign_calendly(signing_key: str, body: bytes, at: datetime) -> str:
    """The header value Calendly sends for `body` at `at`."""
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(signing_key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"
