"""Signed checkpoints of sessions' trails: tamper evidence the database cannot forge.

The hash chain proves a trail was not changed after its hashes were written, but whoever
can write the table can rewrite a trail *and* recompute every hash after the change. A
checkpoint records, for one session at one moment, how many rows its trail had, the hash
of the last (the head) and a short digest of each row's content, signed with HMAC-SHA256
under a key the service holds and PostgreSQL never sees (`checkpoint_keys`, or the
embedded stack's key file). `audit verify` compares each trail with its latest checkpoint
whose signature holds (`compare`): a row added among the checkpointed ones is named
inserted, one gone missing, one with other content changed, and a trail whose content
matches but whose hashes do not is named rewritten with recomputed hashes.

When checkpoints are written: the worker runs `Checkpointer`, a follower of the trail, every
`checkpoint_interval_seconds` (60 by default). Each round checkpoints every session that
gained rows since its last checkpoint; the checkpoint taken after a session's `closed` row
is its closing checkpoint. So a running session is checkpointed at most a minute behind its
trail, and a closed one within a minute of closing. What the window leaves open (rows
rewritten before their first checkpoint, checkpoints deleted by a superuser) is in
docs/security.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from missed_session.config import Settings
from missed_session.local_secrets import read_or_create
from missed_session.store.chain import ChainRow, canonical_event

log = structlog.get_logger(__name__)

CHECKPOINT_VERSION = 1
"""Part of every signed statement, so a later format cannot be confused with this one."""
DIGEST_CHARS = 16
"""Hex characters kept of each row's content digest (64 bits: enough to tell rows apart)."""
MIN_KEY_BYTES = 32
FOLLOW_MARGIN = timedelta(minutes=5)
"""How far before its last round the checkpointer looks again: a transaction that commits
late records its rows with the time it started."""


class CheckpointKeyError(ValueError):
    """A checkpoint key is unusable; the message names it."""


def parse_checkpoint_key(key_id: str, encoded: str) -> bytes:
    """A base64 key of at least 32 bytes."""
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        msg = f"checkpoint key {key_id!r} is not valid base64"
        raise CheckpointKeyError(msg) from None
    if len(key) < MIN_KEY_BYTES:
        msg = f"checkpoint key {key_id!r} must be at least {MIN_KEY_BYTES} bytes, got {len(key)}"
        raise CheckpointKeyError(msg)
    return key


class CheckpointSigner:
    """Signs with the active key; verifies with any configured key (keys rotate)."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            msg = f"active checkpoint key {active_key_id!r} is not among the configured keys"
            raise CheckpointKeyError(msg)
        self._keys = dict(keys)
        self.active_key_id = active_key_id

    def sign(self, statement: bytes) -> tuple[str, str]:
        """The key id and hex signature of `statement`."""
        key = self._keys[self.active_key_id]
        return self.active_key_id, hmac.new(key, statement, hashlib.sha256).hexdigest()

    def verifies(self, statement: bytes, key_id: str, signature: str) -> bool:
        """Whether `signature` is the named key's over `statement`."""
        key = self._keys.get(key_id)
        if key is None:
            return False
        expected = hmac.new(key, statement, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)


EMBEDDED_KEY_FILE = "checkpoint-key"
"""Under the data directory: the embedded stack's checkpoint key (owner-only)."""
EMBEDDED_KEY_ID = "embedded-1"


def signer_for(settings: Settings) -> CheckpointSigner | None:
    """The configured checkpoint keys, the embedded stack's key file, or None.

    None only with an external database and no keys configured: checkpoints are then
    neither written nor checked.
    """
    if settings.checkpoint_keys:
        keys = {key_id: parse_checkpoint_key(key_id, encoded)
                for key_id, encoded in settings.checkpoint_keys.items()}
        return CheckpointSigner(keys, settings.checkpoint_key_id or next(iter(keys)))
    if settings.database_url:
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = read_or_create(settings.data_dir / EMBEDDED_KEY_FILE)
    return CheckpointSigner({EMBEDDED_KEY_ID: secret.encode()}, EMBEDDED_KEY_ID)


def row_digest(row: ChainRow) -> str:
    """A digest of the row's content alone (not its place or links), to align trails."""
    return hashlib.sha256(canonical_event(
        session_id=row.session_id, sequence=0, event_type=row.event_type,
        occurred_at=row.occurred_at, data=row.data, prev_hash="",
    )).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of one session's trail as it stood."""

    session_id: str
    sequence: int
    """Rows the trail had."""
    head: str
    """Hash of row `sequence`."""
    digests: tuple[str, ...]
    """`row_digest` of rows 1..sequence."""
    closing: bool
    """Whether row `sequence` is the session's `closed` row."""
    written_at: datetime
    key_id: str
    signature: str

    def statement(self) -> bytes:
        """The bytes signed."""
        return _statement(self.session_id, self.sequence, self.head, self.digests,
                          self.closing, self.written_at)

    def verifies(self, signer: CheckpointSigner) -> bool:
        """Whether the signature holds."""
        return signer.verifies(self.statement(), self.key_id, self.signature)


def _statement(session_id: str, sequence: int, head: str, digests: Sequence[str],
               closing: bool, written_at: datetime) -> bytes:
    return json.dumps({
        "v": CHECKPOINT_VERSION, "session_id": session_id, "sequence": sequence,
        "head": head, "digests": list(digests), "closing": closing,
        "written_at": written_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }, sort_keys=True, separators=(",", ":")).encode()


def make_checkpoint(rows: Sequence[ChainRow], signer: CheckpointSigner,
                    at: datetime) -> Checkpoint:
    """Sign the trail `rows` (one session's, in order, at least one) as of `at`."""
    last = rows[-1]
    digests = tuple(row_digest(row) for row in rows)
    head = last.hash or ""
    closing = last.event_type == "closed"
    key_id, signature = signer.sign(
        _statement(last.session_id, last.sequence, head, digests, closing, at)
    )
    return Checkpoint(last.session_id, last.sequence, head, digests, closing, at, key_id,
                      signature)


def compare(rows: Sequence[ChainRow], checkpoint: Checkpoint) -> str | None:
    """What changed in the trail since `checkpoint` (rows appended after it are fine)."""
    when = checkpoint.written_at.astimezone(UTC).isoformat(timespec="seconds")
    since = f"since its checkpoint of {when} ({checkpoint.sequence} rows)"
    current = [row_digest(row) for row in rows]
    matcher = difflib.SequenceMatcher(a=checkpoint.digests, b=current, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "insert" and a1 == len(checkpoint.digests)):
            continue  # unchanged, or appended after the checkpoint
        if tag == "insert":
            names = ", ".join(f"row {rows[i].sequence} ({rows[i].event_type})"
                              for i in range(b1, b2))
            return f"{names} {'was' if b2 - b1 == 1 else 'were'} inserted {since}"
        if tag == "delete":
            places = ", ".join(str(i + 1) for i in range(a1, a2))
            return (f"checkpointed row{'s' if a2 - a1 > 1 else ''} {places} "
                    f"{'are' if a2 - a1 > 1 else 'is'} missing {since}")
        names = ", ".join(f"row {rows[i].sequence} ({rows[i].event_type})"
                          for i in range(b1, b2))
        return f"{names} changed {since}"
    if len(rows) < checkpoint.sequence:
        return f"rows after {len(rows)} are missing {since}"
    if rows[checkpoint.sequence - 1].hash != checkpoint.head:
        return (f"the trail was rewritten with recomputed hashes {since}: row "
                f"{checkpoint.sequence}'s hash is not the checkpointed head")
    return None


# -- storage ---------------------------------------------------------------------------------

def _from_row(row: asyncpg.Record) -> Checkpoint:
    return Checkpoint(row["session_id"], row["sequence"], row["head"],
                      tuple(json.loads(row["digests"])), row["closing"], row["written_at"],
                      row["key_id"], row["signature"])


async def checkpoints_of(pool: asyncpg.Pool, session_id: str) -> list[Checkpoint]:
    """The session's checkpoints, latest first."""
    rows = await pool.fetch(
        "SELECT session_id, sequence, head, digests, closing, written_at, key_id, signature"
        " FROM audit_checkpoints WHERE session_id = $1 ORDER BY sequence DESC",
        session_id,
    )
    return [_from_row(row) for row in rows]


async def write(pool: asyncpg.Pool, checkpoint: Checkpoint) -> bool:
    """Record a checkpoint; False when the session already has one at that row."""
    status = await pool.execute(
        "INSERT INTO audit_checkpoints (session_id, sequence, head, digests, closing,"
        " written_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (session_id, sequence) DO NOTHING",
        checkpoint.session_id, checkpoint.sequence, checkpoint.head,
        json.dumps(list(checkpoint.digests)), checkpoint.closing, checkpoint.written_at,
        checkpoint.key_id, checkpoint.signature,
    )
    return status.endswith(" 1")


_DUE = (
    # Sessions with rows recorded since $1 whose latest row is past their last checkpoint.
    "SELECT s.session_id FROM (SELECT session_id, max(sequence) AS sequence"
    " FROM audit_events WHERE recorded_at >= $1 GROUP BY session_id) s"
    " WHERE s.sequence > coalesce((SELECT max(c.sequence) FROM audit_checkpoints c"
    " WHERE c.session_id = s.session_id), 0) ORDER BY s.session_id LIMIT $2"
)


async def _chain_rows(connection: Any, session_id: str) -> list[ChainRow]:
    rows = await connection.fetch(
        "SELECT session_id, sequence, event_type, occurred_at, data, prev_hash, hash"
        " FROM audit_events WHERE session_id = $1 ORDER BY sequence",
        session_id,
    )
    return [ChainRow(row["session_id"], row["sequence"], row["event_type"],
                     row["occurred_at"], json.loads(row["data"]), row["prev_hash"],
                     row["hash"]) for row in rows]


class Checkpointer:
    """Follows the trail and checkpoints every session that grew (see the module doc)."""

    def __init__(self, pool: asyncpg.Pool, signer: CheckpointSigner, *,
                 interval: timedelta = timedelta(seconds=60), batch: int = 500) -> None:
        self._pool = pool
        self._signer = signer
        self._interval = interval
        self._batch = batch
        self._since: datetime | None = None

    async def round(self) -> int:
        """Checkpoint every session that gained rows since the last round; how many."""
        started = datetime.now(UTC)
        since = (self._since - FOLLOW_MARGIN) if self._since else datetime.min.replace(tzinfo=UTC)
        written = 0
        while True:
            due = [row["session_id"] for row in await self._pool.fetch(_DUE, since, self._batch)]
            for session_id in due:
                rows = await _chain_rows(self._pool, session_id)
                if rows and await write(self._pool, make_checkpoint(rows, self._signer,
                                                                    datetime.now(UTC))):
                    written += 1
            if len(due) < self._batch:
                break
        self._since = started
        return written

    async def run(self) -> None:
        """Rounds until cancelled; a failed round is logged and tried again next time."""
        while True:
            try:
                written = await self.round()
                if written:
                    log.info("audit_checkpoints_written", sessions=written)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("audit_checkpoint_round_failed", error=type(error).__name__)
            await asyncio.sleep(self._interval.total_seconds())
