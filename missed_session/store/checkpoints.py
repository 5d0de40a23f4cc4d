"""Signed checkpoints of trails, chained in one log: tamper evidence the database cannot forge.

The checkpointer signs only trails that extend what it signed before.

The hash chain proves a trail was not changed after its hashes were written, but whoever
can write the table can rewrite a trail *and* recompute every hash after the change. A
checkpoint records, for one session at one moment, how many rows its trail had, the hash
of the last (the head) and a short digest of each row's content, signed with HMAC-SHA256
under a key the service holds and PostgreSQL never sees (`checkpoint_keys`, or the
embedded stack's key file).

Checkpoints only ever extend: before signing a trail again, the checkpointer holds it
against *every* checkpoint it has (and the checkpoint log's entries for it) and recomputes
its chain; a trail that no longer extends what was signed (a row changed, inserted or
removed, a tail replaced, rows after the closing checkpoint, a checkpoint gone) is never
signed again: the checkpointer refuses, records an integrity finding and raises the alarm
it is given (an urgent notice to the clinical supervisor, a metric: missed_session/audit/
integrity.py). `audit verify` holds each trail against every checkpoint too (`held_against`).

The checkpoint log chains every checkpoint of every trail in the order written: entry `n`
names the hash of entry `n - 1`, commits to its checkpoint's signed statement, and is signed
itself. Its latest head is written after each round outside PostgreSQL (`HeadSink`: an
append-only file beside the keys in the embedded stack), so cutting a trail's tail together
with its checkpoints shows: as a checkpoint the log names that is gone, as a gap or a broken
link in the log, or as a log shorter than the head written outside (`check_log`).

When checkpoints are written: the worker runs `Checkpointer`, a follower of the trail, every
`checkpoint_interval_seconds` (60 by default). Each round checkpoints every session that
gained rows since its last checkpoint; the checkpoint taken after a session's `closed` row
is its closing checkpoint. What is left open (rows rewritten before their first checkpoint,
whoever holds the key, a head sink root can rewrite) is in docs/security.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import structlog

from missed_session.config import Settings
from missed_session.local_secrets import read_or_create
from missed_session.store.chain import ChainRow, canonical_event, verify_chain

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


def checkpoint_digest(checkpoint: Checkpoint) -> str:
    """SHA-256 (hex) of the checkpoint's signed statement: what a log entry commits to."""
    return hashlib.sha256(checkpoint.statement()).hexdigest()


def describe_checkpoint(checkpoint: Checkpoint) -> str:
    """`closing checkpoint at row 6`, `checkpoint at row 4`."""
    kind = "closing checkpoint" if checkpoint.closing else "checkpoint"
    return f"{kind} at row {checkpoint.sequence}"


def held_against(rows: Sequence[ChainRow], found: Sequence[Checkpoint],
                 logged: Sequence[LogEntry], signer: CheckpointSigner,
                 ) -> tuple[str, str | None]:
    """What anchors the trail, and the first thing its checkpoints say is wrong (or None).

    Every checkpoint counts, not only the latest: each must be genuine, each must still
    hold (`compare`: the rows it covers unchanged, its head the row's hash), nothing may
    follow a closing checkpoint, and every checkpoint the log names for the session (`logged`)
    must still be there, as signed. So a trail cut back to an earlier checkpoint together
    with its later checkpoints is named, and no later checkpoint of a forgery can launder
    it (the checkpointer refuses to sign one; one signed by a key holder is still held
    against the earlier ones).
    """
    ordered = sorted(found, key=lambda checkpoint: checkpoint.sequence)
    for checkpoint in reversed(ordered):
        if not checkpoint.verifies(signer):
            return "a forged checkpoint", (
                f"the checkpoint at row {checkpoint.sequence} is forged: its signature "
                f"(key {checkpoint.key_id!r}) does not verify"
            )
    anchor = describe_checkpoint(ordered[-1]) if ordered else "not checkpointed yet"
    by_sequence = {checkpoint.sequence: checkpoint for checkpoint in ordered}
    for entry in sorted(logged, key=lambda entry: entry.sequence):
        named = by_sequence.get(entry.sequence)
        if named is None:
            return anchor, (f"the checkpoint at row {entry.sequence} is missing: the "
                            f"checkpoint log names it (entry {entry.position}, "
                            f"{_when(entry.written_at)})")
        if checkpoint_digest(named) != entry.checkpoint_digest:
            return anchor, (f"the checkpoint at row {entry.sequence} is not the one the "
                            f"checkpoint log names (entry {entry.position})")
    for checkpoint in ordered:
        problem = compare(rows, checkpoint)
        if problem is None and checkpoint.closing and len(rows) > checkpoint.sequence:
            extra = rows[checkpoint.sequence]
            problem = (f"row {extra.sequence} ({extra.event_type}) was added after the "
                       "closing checkpoint")
        if problem is not None:
            return anchor, problem
    return anchor, None


def _when(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


# -- the checkpoint log ----------------------------------------------------------------------

LOG_GENESIS = "0" * 64
"""The `prev_hash` of the log's first entry."""
LOG_VERSION = 1
LOG_LOCK = 0x6D73725F6C6F67
"""The advisory lock appends to the log are serialised by (positions stay gapless)."""


@dataclass(frozen=True)
class LogEntry:
    """One entry of the checkpoint log: a checkpoint, in the order written, chained, signed."""

    position: int
    """1, 2, ...: gapless."""
    session_id: str
    """The checkpointed trail."""
    sequence: int
    """The checkpoint's row."""
    checkpoint_digest: str
    """`checkpoint_digest` of the checkpoint."""
    prev_hash: str
    """`entry_hash` of entry `position - 1` (`LOG_GENESIS` for the first)."""
    entry_hash: str
    """SHA-256 of `statement()`."""
    written_at: datetime
    key_id: str
    signature: str
    """HMAC-SHA256 of `entry_hash` under the named checkpoint key."""

    def statement(self) -> bytes:
        """The bytes hashed."""
        return _entry_statement(self.position, self.session_id, self.sequence,
                                self.checkpoint_digest, self.prev_hash, self.written_at)

    def problem(self, signer: CheckpointSigner) -> str | None:
        """What is wrong with the entry on its own (content, signature), or None."""
        if hashlib.sha256(self.statement()).hexdigest() != self.entry_hash:
            return (f"checkpoint log entry {self.position} was changed: its content does not "
                    "match its hash")
        if not signer.verifies(self.entry_hash.encode(), self.key_id, self.signature):
            return (f"checkpoint log entry {self.position} is forged: its signature (key "
                    f"{self.key_id!r}) does not verify")
        return None


def _entry_statement(position: int, session_id: str, sequence: int, digest: str,
                     prev_hash: str, written_at: datetime) -> bytes:
    return json.dumps({
        "v": LOG_VERSION, "position": position, "session_id": session_id,
        "sequence": sequence, "checkpoint": digest, "prev_hash": prev_hash,
        "written_at": written_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }, sort_keys=True, separators=(",", ":")).encode()


def make_entry(position: int, checkpoint: Checkpoint, prev_hash: str,
               signer: CheckpointSigner, at: datetime) -> LogEntry:
    """The log entry at `position` for `checkpoint`, after the entry hashed `prev_hash`."""
    digest = checkpoint_digest(checkpoint)
    entry_hash = hashlib.sha256(_entry_statement(
        position, checkpoint.session_id, checkpoint.sequence, digest, prev_hash, at,
    )).hexdigest()
    key_id, signature = signer.sign(entry_hash.encode())
    return LogEntry(position, checkpoint.session_id, checkpoint.sequence, digest, prev_hash,
                    entry_hash, at, key_id, signature)


@dataclass(frozen=True)
class LogHead:
    """The log's head as written outside PostgreSQL: which entry, and its hash, signed."""

    position: int
    entry_hash: str
    written_at: datetime
    key_id: str
    signature: str

    @staticmethod
    def statement_of(position: int, entry_hash: str, written_at: datetime) -> bytes:
        """The bytes signed."""
        return (f"msr-checkpoint-log-head:v{LOG_VERSION}:{position}:{entry_hash}:"
                f"{_when(written_at)}").encode()

    @classmethod
    def of(cls, entry: LogEntry, signer: CheckpointSigner, at: datetime) -> LogHead:
        """The signed head naming `entry`."""
        key_id, signature = signer.sign(cls.statement_of(entry.position, entry.entry_hash, at))
        return cls(entry.position, entry.entry_hash, at, key_id, signature)

    def verifies(self, signer: CheckpointSigner) -> bool:
        """Whether the signature holds."""
        return signer.verifies(self.statement_of(self.position, self.entry_hash,
                                                 self.written_at),
                               self.key_id, self.signature)

    def line(self) -> str:
        """One JSON line."""
        return json.dumps({"position": self.position, "entry_hash": self.entry_hash,
                           "written_at": _when(self.written_at), "key_id": self.key_id,
                           "signature": self.signature}, sort_keys=True)

    @classmethod
    def from_line(cls, line: str) -> LogHead:
        """Parse `line()`; ValueError (or KeyError, TypeError) when it is not one."""
        document = json.loads(line)
        return cls(int(document["position"]), str(document["entry_hash"]),
                   datetime.fromisoformat(document["written_at"]), str(document["key_id"]),
                   str(document["signature"]))


class HeadSinkError(Exception):
    """The heads written outside PostgreSQL cannot be read; the message says why."""


class HeadSink(Protocol):
    """Where the checkpoint log's heads are kept outside PostgreSQL: appended, never changed.

    `FileHeadSink` in the embedded stack; a deployment may put the file on write-once
    storage or implement this for an object store with object lock (docs/security.md).
    """

    def append(self, head: LogHead) -> None:
        """Keep one more head (durably, before returning)."""

    def heads(self) -> list[LogHead]:
        """Every head kept, oldest first; HeadSinkError when they cannot be read."""


class FileHeadSink:
    """An append-only file of heads, one JSON line each (0600, opened with O_APPEND)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, head: LogHead) -> None:
        """Append and fsync one line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (head.line() + "\n").encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def heads(self) -> list[LogHead]:
        """The file's heads; a file that does not exist holds none."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as error:
            msg = f"{self.path}: {type(error).__name__}"
            raise HeadSinkError(msg) from None
        heads = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                heads.append(LogHead.from_line(line))
            except (ValueError, KeyError, TypeError):
                msg = f"{self.path}: line {number} is not a checkpoint log head"
                raise HeadSinkError(msg) from None
        return heads


EMBEDDED_HEAD_FILE = "checkpoint-heads"
"""Under the data directory, beside the checkpoint key: the embedded stack's head file."""


def head_sink_for(settings: Settings) -> HeadSink:
    """The configured head file, or the one beside the keys in the data directory."""
    return FileHeadSink(settings.checkpoint_head_file
                        or settings.data_dir / EMBEDDED_HEAD_FILE)


# -- storage ---------------------------------------------------------------------------------

_CHECKPOINT_COLUMNS = ("session_id, sequence, head, digests, closing, written_at, key_id,"
                       " signature")
_ENTRY_COLUMNS = ("position, session_id, sequence, checkpoint_digest, prev_hash, entry_hash,"
                  " written_at, key_id, signature")


def _from_row(row: asyncpg.Record) -> Checkpoint:
    return Checkpoint(row["session_id"], row["sequence"], row["head"],
                      tuple(json.loads(row["digests"])), row["closing"], row["written_at"],
                      row["key_id"], row["signature"])


def _entry_from_row(row: asyncpg.Record) -> LogEntry:
    return LogEntry(row["position"], row["session_id"], row["sequence"],
                    row["checkpoint_digest"], row["prev_hash"], row["entry_hash"],
                    row["written_at"], row["key_id"], row["signature"])


async def checkpoints_of(pool: Any, session_id: str) -> list[Checkpoint]:
    """The session's checkpoints, latest first."""
    rows = await pool.fetch(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE session_id = $1"  # noqa: S608 - constant columns
        " ORDER BY sequence DESC",
        session_id,
    )
    return [_from_row(row) for row in rows]


async def log_entries_of(pool: Any, session_id: str) -> list[LogEntry]:
    """The checkpoint log's entries for one session, in order."""
    rows = await pool.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM checkpoint_log WHERE session_id = $1"  # noqa: S608 - constant columns
        " ORDER BY sequence",
        session_id,
    )
    return [_entry_from_row(row) for row in rows]


async def write(pool: asyncpg.Pool, checkpoint: Checkpoint) -> bool:
    """Record a checkpoint alone (no log entry); False when one is at that row already."""
    return await _insert_checkpoint(pool, checkpoint)


async def _insert_checkpoint(connection: Any, checkpoint: Checkpoint) -> bool:
    status = await connection.execute(
        "INSERT INTO audit_checkpoints (session_id, sequence, head, digests, closing,"
        " written_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (session_id, sequence) DO NOTHING",
        checkpoint.session_id, checkpoint.sequence, checkpoint.head,
        json.dumps(list(checkpoint.digests)), checkpoint.closing, checkpoint.written_at,
        checkpoint.key_id, checkpoint.signature,
    )
    return str(status).endswith(" 1")


async def append_logged(pool: asyncpg.Pool, checkpoint: Checkpoint, signer: CheckpointSigner,
                        *, new_checkpoint: bool = True) -> LogEntry | None:
    """Write the checkpoint (unless `new_checkpoint` is False) and its log entry, atomically.

    None when the checkpoint was there already (another worker's round) or is logged.
    """
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", LOG_LOCK)
        if new_checkpoint and not await _insert_checkpoint(connection, checkpoint):
            return None
        if await connection.fetchval(
            "SELECT 1 FROM checkpoint_log WHERE session_id = $1 AND sequence = $2",
            checkpoint.session_id, checkpoint.sequence,
        ):
            return None
        last = await connection.fetchrow(
            "SELECT position, entry_hash FROM checkpoint_log ORDER BY position DESC LIMIT 1"
        )
        position, prev = (1, LOG_GENESIS) if last is None else (
            last["position"] + 1, last["entry_hash"])
        entry = make_entry(position, checkpoint, prev, signer, datetime.now(UTC))
        await connection.execute(
            f"INSERT INTO checkpoint_log ({_ENTRY_COLUMNS})"  # noqa: S608 - constant columns
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            entry.position, entry.session_id, entry.sequence, entry.checkpoint_digest,
            entry.prev_hash, entry.entry_hash, entry.written_at, entry.key_id, entry.signature,
        )
        return entry


async def check_log(pool: Any, signer: CheckpointSigner, heads: Sequence[LogHead] | None,
                    *, page: int = 1000) -> list[str]:
    """What is wrong with the checkpoint log as a whole; empty when it is intact.

    Every entry must follow the one before (gapless positions, each naming its
    predecessor's hash), hash and verify as signed, and name a checkpoint that is still
    there as signed. Every head kept outside PostgreSQL (`heads`; None: no sink to read)
    must be genuine and name an entry the log still has, with the same hash: a log cut back
    (its tail deleted with the trails' tails and checkpoints) is shorter than a head.
    """
    problems: list[str] = []
    hashes: dict[int, str] = {}
    after, prev = 0, LOG_GENESIS
    while len(problems) < 10:
        rows = await pool.fetch(_LOG_PAGE, after, page)
        if not rows:
            break
        for row in rows:
            entry = _entry_from_row(row)
            hashes[entry.position] = entry.entry_hash
            problems += _entry_problems(entry, row, after, prev, signer)
            after, prev = entry.position, entry.entry_hash
    if heads is not None:
        problems += _head_problems(heads, hashes, after, signer)
    return problems


_LOG_PAGE = (
    "SELECT l.position, l.session_id, l.sequence, l.checkpoint_digest, l.prev_hash,"
    " l.entry_hash, l.written_at, l.key_id, l.signature, c.head, c.digests,"
    " c.closing, c.written_at AS c_written_at, c.key_id AS c_key_id,"
    " c.signature AS c_signature FROM checkpoint_log l LEFT JOIN audit_checkpoints c"
    " ON c.session_id = l.session_id AND c.sequence = l.sequence"
    " WHERE l.position > $1 ORDER BY l.position LIMIT $2"
)


def _entry_problems(entry: LogEntry, row: asyncpg.Record, after: int, prev: str,
                    signer: CheckpointSigner) -> list[str]:
    """One entry against the one before it, its own hash and signature, and its checkpoint."""
    problems = []
    if entry.position != after + 1:
        problems.append(f"checkpoint log entries {after + 1}..{entry.position - 1} are missing")
    elif entry.prev_hash != prev:
        problems.append(f"checkpoint log entry {entry.position} does not follow entry "
                        f"{after}: an entry before it was removed or rewritten")
    problem = entry.problem(signer)
    if problem is not None:
        problems.append(problem)
    where = f"the checkpoint at row {entry.sequence} of {entry.session_id}"
    if row["head"] is None:
        problems.append(f"{where} named by checkpoint log entry {entry.position} is missing")
        return problems
    checkpoint = Checkpoint(row["session_id"], row["sequence"], row["head"],
                            tuple(json.loads(row["digests"])), row["closing"],
                            row["c_written_at"], row["c_key_id"], row["c_signature"])
    if checkpoint_digest(checkpoint) != entry.checkpoint_digest:
        problems.append(f"{where} is not the one checkpoint log entry {entry.position} names")
    return problems


def _head_problems(heads: Sequence[LogHead], hashes: Mapping[int, str], last: int,
                   signer: CheckpointSigner) -> list[str]:
    """The heads kept outside against the log as it is (`hashes` by position, up to `last`)."""
    if hashes and not heads:
        return [f"the checkpoint log has {len(hashes)} entries but no head was found outside "
                "the database (the head file is missing or empty)"]
    for number, head in enumerate(heads, start=1):
        written = f"the head written outside the database at {_when(head.written_at)}"
        if not head.verifies(signer):
            return [f"outside head {number} (entry {head.position}) is forged: its signature "
                    "does not verify"]
        if head.position > last:
            return [f"the checkpoint log was cut: it ends at entry {last}, but {written} "
                    f"names entry {head.position}"]
        if hashes.get(head.position) != head.entry_hash:
            return [f"checkpoint log entry {head.position} is not the one {written} names: "
                    "the log was rewritten from there"]
    return []


@dataclass(frozen=True)
class IntegrityFinding:
    """Something wrong found outside the protocol, for the supervisor and the reviewer."""

    session_id: str
    """The session (or `checkpoint-log` for the log as a whole)."""
    kind: str
    """`trail_not_extending`, `checkpoint_log_broken`, `stopped_outside_protocol`."""
    problem: str
    """In words, naming rows and checkpoints; never the trail's content."""


TRAIL_NOT_EXTENDING = "trail_not_extending"
LOG_BROKEN = "checkpoint_log_broken"
STOPPED = "stopped_outside_protocol"
LOG_SUBJECT = "checkpoint-log"
"""The `session_id` of a finding about the log as a whole."""

Alarm = Callable[[IntegrityFinding], Awaitable[None]]
"""Raises the alarm for a new finding (missed_session/audit/integrity.py: an urgent notice to
the clinical supervisor, a metric)."""


async def record_finding(pool: Any, finding: IntegrityFinding) -> bool:
    """Keep the finding (once per session and kind); True when it is new."""
    status = await pool.execute(
        "INSERT INTO integrity_findings (session_id, kind, problem) VALUES ($1, $2, $3)"
        " ON CONFLICT (session_id, kind) DO NOTHING",
        finding.session_id, finding.kind, finding.problem,
    )
    return str(status).endswith(" 1")


async def findings(pool: Any) -> list[tuple[IntegrityFinding, datetime]]:
    """Every finding kept, with when it was found, in order."""
    rows = await pool.fetch(
        "SELECT session_id, kind, problem, found_at FROM integrity_findings"
        " ORDER BY found_at, session_id, kind"
    )
    return [(IntegrityFinding(row["session_id"], row["kind"], row["problem"]),
             row["found_at"]) for row in rows]


_DUE = (
    # Sessions with rows recorded since $1 whose latest row is past their last checkpoint.
    "SELECT s.session_id FROM (SELECT session_id, max(sequence) AS sequence"
    " FROM audit_events WHERE recorded_at >= $1 GROUP BY session_id) s"
    " WHERE s.session_id > $3 AND s.sequence > coalesce((SELECT max(c.sequence)"
    " FROM audit_checkpoints c WHERE c.session_id = s.session_id), 0)"
    " ORDER BY s.session_id LIMIT $2"
)
_SWEEP = (
    # Sessions with a checkpoint whose row is gone or has another hash, a row after their
    # closing checkpoint, or a logged checkpoint that is gone.
    "SELECT c.session_id FROM audit_checkpoints c LEFT JOIN audit_events e"
    " ON e.session_id = c.session_id AND e.sequence = c.sequence"
    " WHERE e.hash IS DISTINCT FROM c.head"
    " UNION SELECT c.session_id FROM audit_checkpoints c WHERE c.closing AND EXISTS"
    " (SELECT 1 FROM audit_events e WHERE e.session_id = c.session_id"
    " AND e.sequence > c.sequence)"
    " UNION SELECT l.session_id FROM checkpoint_log l LEFT JOIN audit_checkpoints c"
    " ON c.session_id = l.session_id AND c.sequence = l.sequence WHERE c.session_id IS NULL"
    " ORDER BY 1 LIMIT $1"
)
_UNLOGGED = (
    # Checkpoints without a log entry: written before the log existed (or by another hand).
    f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints c WHERE NOT EXISTS"  # noqa: S608
    " (SELECT 1 FROM checkpoint_log l WHERE l.session_id = c.session_id"
    " AND l.sequence = c.sequence) ORDER BY c.recorded_at, c.session_id, c.sequence"
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
    """Follows the trail and checkpoints every session that grew (see the module doc).

    Signs a trail only if it extends everything signed before; refuses otherwise, records
    the finding and raises `alarm`. Writes the log's head to `heads` after each round that
    appended to the log, and before signing checks that the log still ends where its last
    head said (a log cut back is refused as a whole). Every `sweep_every` rounds (the first
    included) it also finds trails cut back or rewritten below a checkpoint, which gain no
    rows and so are never due (`_sweep`).
    """

    def __init__(self, pool: asyncpg.Pool, signer: CheckpointSigner, *,
                 interval: timedelta = timedelta(seconds=60), batch: int = 500,
                 heads: HeadSink | None = None, alarm: Alarm | None = None,
                 sweep_every: int = 5) -> None:
        self._pool = pool
        self._signer = signer
        self._interval = interval
        self._batch = batch
        self._heads = heads
        self._alarm = alarm
        self._since: datetime | None = None
        self._last_head: LogHead | None = None
        self._head_read = False
        self._backfilled = False
        self._sweep_every = max(1, sweep_every)
        self._rounds = 0
        self.refused: set[str] = set()
        """Sessions (and `checkpoint-log`) refused by this checkpointer."""

    async def round(self) -> int:
        """Checkpoint every session that grew and still extends; how many were checkpointed."""
        started = datetime.now(UTC)
        if not await self._log_still_extends():
            return 0
        since = (self._since - FOLLOW_MARGIN) if self._since else datetime.min.replace(tzinfo=UTC)
        last: LogEntry | None = None
        if not self._backfilled:  # checkpoints from before the log: once per process
            last = await self._log_unlogged()
            self._backfilled = True
        if self._rounds % self._sweep_every == 0:
            await self._sweep()
        self._rounds += 1
        written = 0
        after = ""
        while True:
            due = [row["session_id"] for row in await self._pool.fetch(
                _DUE, since, self._batch, after)]
            for session_id in due:
                entry = await self._checkpoint(session_id)
                if entry is not None:
                    written += 1
                    last = entry
            if len(due) < self._batch:
                break
            after = due[-1]
        if last is not None and self._heads is not None:
            head = LogHead.of(last, self._signer, datetime.now(UTC))
            await asyncio.to_thread(self._heads.append, head)
            self._last_head = head
        self._since = started
        return written

    async def _sweep(self) -> None:
        """Hold against their checkpoints the trails that no longer end where one said.

        A trail cut back (with or without its later checkpoints) or rewritten below its
        latest checkpoint gains no rows, so it is never due; this finds it (a checkpoint
        whose row is gone or has another hash, a logged checkpoint gone) and refuses it,
        with the same finding and alarm. One indexed join each, every `sweep_every` rounds.
        """
        for row in await self._pool.fetch(_SWEEP, self._batch):
            if row["session_id"] not in self.refused:
                await self._checkpoint(row["session_id"], sign=False)

    async def _checkpoint(self, session_id: str, *, sign: bool = True) -> LogEntry | None:
        rows = await _chain_rows(self._pool, session_id)
        found = await checkpoints_of(self._pool, session_id)
        logged = await log_entries_of(self._pool, session_id)
        problem = verify_chain(session_id, rows).problem if rows else None
        if problem is None:
            _, problem = held_against(rows, found, logged, self._signer)
        if problem is not None:
            await self._refuse(IntegrityFinding(session_id, TRAIL_NOT_EXTENDING, problem))
            return None
        if not sign or not rows or (found and rows[-1].sequence <= found[0].sequence):
            return None
        checkpoint = make_checkpoint(rows, self._signer, datetime.now(UTC))
        return await append_logged(self._pool, checkpoint, self._signer)

    async def _log_unlogged(self) -> LogEntry | None:
        """Log checkpoints written before the log existed (genuine ones only).

        Every checkpoint written since is logged in its own transaction, so this runs once
        per process, on its first round.
        """
        last = None
        for row in await self._pool.fetch(_UNLOGGED):
            checkpoint = _from_row(row)
            if not checkpoint.verifies(self._signer):
                await self._refuse(IntegrityFinding(
                    checkpoint.session_id, TRAIL_NOT_EXTENDING,
                    f"the checkpoint at row {checkpoint.sequence} is forged: its signature "
                    f"(key {checkpoint.key_id!r}) does not verify"))
                continue
            entry = await append_logged(self._pool, checkpoint, self._signer,
                                        new_checkpoint=False)
            last = entry or last
        return last

    async def _log_still_extends(self) -> bool:
        """Whether the log still holds the last head written outside; refuse if not."""
        if self._heads is None:
            return True
        if not self._head_read:
            try:
                kept = await asyncio.to_thread(self._heads.heads)
            except HeadSinkError as error:
                await self._refuse(IntegrityFinding(LOG_SUBJECT, LOG_BROKEN, str(error)))
                return False
            self._last_head = kept[-1] if kept else None
            self._head_read = True
        head = self._last_head
        if head is None:
            return True
        found = await self._pool.fetchval(
            "SELECT entry_hash FROM checkpoint_log WHERE position = $1", head.position)
        if found == head.entry_hash:
            return True
        problem = (f"the checkpoint log was cut: it no longer holds entry {head.position}"
                   if found is None else
                   f"checkpoint log entry {head.position} was rewritten")
        await self._refuse(IntegrityFinding(
            LOG_SUBJECT, LOG_BROKEN,
            f"{problem} (the head written outside the database at "
            f"{_when(head.written_at)} names it); no checkpoint is signed until it is resolved"))
        return False

    async def _refuse(self, finding: IntegrityFinding) -> None:
        """Sign nothing for it; raise the alarm (once per process) and keep the finding.

        An alarm that fails (Temporal unreachable) is raised again next round; the notice
        it starts is idempotent, so a restarted worker raising it again adds nothing.
        """
        if finding.session_id in self.refused:
            return
        log.warning("audit_checkpoint_refused", session_id=finding.session_id,
                    kind=finding.kind, problem=finding.problem)
        if self._alarm is not None:
            try:
                await self._alarm(finding)
            except Exception as error:  # the refusal stands; the alarm is raised again next round
                log.error("integrity_alarm_failed", session_id=finding.session_id,
                          error=type(error).__name__)
                await record_finding(self._pool, finding)
                return
        await record_finding(self._pool, finding)
        self.refused.add(finding.session_id)

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
