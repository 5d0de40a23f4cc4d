"""Payload encryption: what Temporal stores is ciphertext.

Temporal keeps every workflow input, signal and activity result in its history, and the
Web UI shows them. A session's input names the client and their phone number, so every
payload is sealed with AES-256-GCM before it leaves the process. The key id travels in
the payload's metadata: new payloads use the active key, and any configured key can still
open old ones, so keys rotate without breaking running sessions or audit replays.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


class CodecError(ValueError):
    """A payload cannot be opened; the message names which and why (never its content)."""


class CodecKeyError(CodecError):
    """A key is malformed, or a payload names a key this process does not hold."""


class CodecIntegrityError(CodecError):
    """A sealed payload does not open with the key it names: tampered, or another key."""


def parse_key(key_id: str, encoded: str) -> bytes:
    """Decode a base64 AES-256 key, naming the key id when it is unusable."""
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        msg = f"encryption key {key_id!r} is not valid base64"
        raise CodecKeyError(msg) from None
    if len(key) != KEY_BYTES:
        msg = f"encryption key {key_id!r} must be {KEY_BYTES} bytes, got {len(key)}"
        raise CodecKeyError(msg)
    return key


def new_key() -> str:
    """A fresh random key, base64-encoded, for configuration files."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each serialized payload, with key rotation by key id."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            msg = f"active encryption key {active_key_id!r} is not among the configured keys"
            raise CodecKeyError(msg)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active_key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Seal every payload with the active key."""
        cipher = self._ciphers[self._active]
        sealed: list[Payload] = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self._active.encode()},
                    data=nonce + cipher.encrypt(nonce, payload.SerializeToString(), None),
                )
            )
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Open sealed payloads with the key they name; pass plain ones through."""
        opened: list[Payload] = []
        for number, payload in enumerate(payloads, start=1):
            if payload.metadata.get("encoding") != ENCODING:
                opened.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                msg = f"payload {number} is sealed with unknown encryption key {key_id!r}"
                raise CodecKeyError(msg)
            data = payload.data
            plain = Payload()
            try:
                plain.ParseFromString(
                    cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
                )
            except (InvalidTag, ValueError, DecodeError):
                msg = (f"payload {number} does not open with encryption key {key_id!r}: "
                       "tampered, truncated or sealed with another key of that id")
                raise CodecIntegrityError(msg) from None
            opened.append(plain)
        return opened
