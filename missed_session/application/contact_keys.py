"""Finding a client's sessions by phone number without the number leaving the service.

Each session carries, as a search attribute, a keyed hash of the client's phone number.
The hash key is derived from the payload encryption key, so a reader of Temporal's
visibility store (or the Web UI) cannot test guesses of a number without that key, and
nothing new must be configured. After a key rotation, sessions booked under an older key
are found through that key, which stays configured for decryption.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from missed_session.codec.encryption import parse_key
from missed_session.config import Settings
from missed_session.temporal.client import _embedded_keys

PURPOSE = b"missed-session contact lookup v1"
"""Separates this use of the encryption key from encryption itself."""
CONTACT_KEY = re.compile(r"^[0-9a-f]{32}$")


class ContactKeys:
    """The contact key of a phone number, under the active key and under every key."""

    def __init__(self, keys: dict[str, bytes], active: str) -> None:
        self._keys = {key_id: hmac.new(key, PURPOSE, hashlib.sha256).digest()
                      for key_id, key in keys.items()}
        self._active = active

    @classmethod
    def of(cls, settings: Settings) -> ContactKeys:
        """The keys the service encrypts with (the embedded stack's key file included)."""
        encoded = dict(settings.encryption_keys) or _embedded_keys(settings.data_dir)
        active = settings.encryption_key_id or next(iter(encoded))
        return cls({key_id: parse_key(key_id, value) for key_id, value in encoded.items()},
                   active)

    def for_booking(self, phone: str) -> str:
        """The key a new session is booked with."""
        return _keyed(self._keys[self._active], phone)

    def for_lookup(self, phone: str) -> list[str]:
        """Every key a session of this number may carry (one per configured key)."""
        return sorted({_keyed(key, phone) for key in self._keys.values()})


def _keyed(key: bytes, phone: str) -> str:
    return hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()[:32]
