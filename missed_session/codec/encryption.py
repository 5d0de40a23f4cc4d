"""Payload encryption: what Temporal stores is ciphertext.

Temporal keeps every workflow input, signal and activity result in its history, and the
Web UI shows them. A session's input names the client and their phone number, so every
payload is sealed with AES-256-GCM before it leaves the process. The key id travels in
the payload's metadata: new payloads use the active key, and any configured key can still
open old ones, so keys rotate without breaking running sessions or audit replays.

Only key holders can talk to a session: the codec every Temporal client and worker of the
service uses (`EncryptionCodec.guarding()`, which `temporal.client.data_converter` installs)
refuses, on decoding, every payload that is not sealed with a key it holds: plain payloads
from a Temporal client without the key (except the short bare strings the Temporal server
writes itself, `_server_string`), payloads naming an unknown key, and payloads that do
not open. A refused payload becomes a `binary/refused` marker with no data, which no
converter reads, so the SDK refuses what carried it the way it refuses any argument it
cannot read, without failing the workflow task (which would stall the session): an update
is rejected before its validator runs, a signal is dropped, a query fails, a workflow input
or activity result fails its task. Each refusal is logged (`payload_refused`: the reason,
the encoding the payload claimed, the workflow or activity it was for, never its content)
and counted (`missed_session_payloads_refused`). The codec server's `/decode` uses the plain
codec (which passes unsealed payloads through for display and answers 422 for a payload that
does not open), so the Web UI still shows a history that holds a refused payload.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
from collections.abc import Mapping, Sequence
from typing import Self

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.common import MetricCounter, MetricMeter
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

log = structlog.get_logger(__name__)

ENCODING = b"binary/encrypted"
REFUSED = b"binary/refused"
"""The encoding of what a refused payload decodes to: no converter reads it."""
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
    """AES-256-GCM over each serialized payload, with key rotation by key id.

    Decoding passes unsealed payloads through (the codec server shows them); the Temporal
    clients' and workers' codec is `guarding()`'s, which refuses them.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            msg = f"active encryption key {active_key_id!r} is not among the configured keys"
            raise CodecKeyError(msg)
        self._keys = dict(keys)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active_key_id

    def guarding(self, meter: MetricMeter | None = None) -> GuardedCodec:
        """The same keys, refusing every payload not sealed with one of them (module doc)."""
        return GuardedCodec(self._keys, self._active, meter=meter)

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


class GuardedCodec(EncryptionCodec, WithSerializationContext):
    """The Temporal clients' and workers' codec: opens only payloads sealed with a known key.

    See the module doc. `context` (set by the SDK through `with_context`) names the workflow
    or activity a payload belongs to, for the log.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str, *,
                 meter: MetricMeter | None = None) -> None:
        super().__init__(keys, active_key_id)
        self._context: SerializationContext | None = None
        self._refused: MetricCounter | None = None if meter is None else meter.create_counter(
            "missed_session_payloads_refused",
            "Payloads refused by the codec: not sealed with a key the service holds",
        )

    def with_context(self, context: SerializationContext) -> Self:
        """A copy that knows which workflow or activity its payloads belong to."""
        guarded = copy.copy(self)
        guarded._context = context
        return guarded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Open sealed payloads; replace every other one by a `binary/refused` marker."""
        opened: list[Payload] = []
        for payload in payloads:
            if _server_string(payload):
                opened.append(payload)
                continue
            reason = _unsealed_reason(payload, self._ciphers)
            if reason is None:
                try:
                    opened += await super().decode([payload])
                    continue
                except CodecError:
                    reason = "does not open"
            self._refuse(payload, reason)
            opened.append(Payload(metadata={"encoding": REFUSED,
                                            "refused": reason.encode()}))
        return opened

    def _refuse(self, payload: Payload, reason: str) -> None:
        claimed = payload.metadata.get("encoding", b"")[:40].decode("ascii", errors="replace")
        where: dict[str, str | None] = {}
        context = self._context
        if isinstance(context, WorkflowSerializationContext):
            where = {"workflow_id": context.workflow_id}
        elif isinstance(context, ActivitySerializationContext):
            where = {"workflow_id": context.workflow_id, "activity_type": context.activity_type}
        log.warning("payload_refused", reason=reason, encoding=claimed, **where)
        if self._refused is not None:
            self._refused.add(1, {"reason": reason})

    def guarding(self, meter: MetricMeter | None = None) -> GuardedCodec:
        """Itself, counting with `meter` when given."""
        if meter is None:
            return self
        return GuardedCodec(self._keys, self._active, meter=meter)


SERVER_STRING_BYTES = 256


def _server_string(payload: Payload) -> bool:
    """A short bare JSON string: how the Temporal server writes payloads of its own.

    The server, not a worker, writes some payloads in plain: an activity cancelled before
    it started resolves with the details `"ACTIVITY_ID_NOT_STARTED"`, a workflow the server
    terminates carries a reason string. They pass; no workflow input, update, signal or
    query of the service takes a bare string (`tests/test_codec.py` checks every handler),
    so a string cannot carry a decision.
    """
    data = payload.data
    if (payload.metadata.get("encoding") != b"json/plain" or len(data) > SERVER_STRING_BYTES
            or not data.startswith(b'"')):
        return False
    try:
        return isinstance(json.loads(data), str)
    except ValueError:
        return False


def _unsealed_reason(payload: Payload, ciphers: Mapping[str, AESGCM]) -> str | None:
    """Why a payload is not sealed with a known key (None: it claims to be; try to open it)."""
    if payload.metadata.get("encoding") != ENCODING:
        return "not sealed"
    if payload.metadata.get(KEY_ID, b"").decode(errors="replace") not in ciphers:
        return "unknown key"
    return None
