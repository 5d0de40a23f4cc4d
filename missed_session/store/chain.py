"""The hash chain over a session's audit trail: canonical encoding, hashing, verification.

Each row's hash is SHA-256 over a canonical JSON encoding of the event (session id,
sequence, event type, when it occurred in UTC to the microsecond, its data) and the hash of
the session's previous row (`GENESIS` for the first). Changing any field of any row, or
removing or inserting a row, breaks the chain at that row or the next; `verify_chain` names
the first row that is changed, missing or inserted. Pure: no I/O, so the rules can be
checked without a database.

The chain proves the trail was not changed *after* its hashes were written. Someone able to
rewrite the table and recompute every hash after it is not stopped by the chain alone; the
replay cross-check (the workflow's history in Temporal) and the signed checkpoints
(`missed_session.store.checkpoints`, a key the database does not hold) are the anchors
against that. See docs/audit.md and docs/security.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

GENESIS = "0" * 64
"""The `prev_hash` of a session's first row."""
CHAIN_VERSION = 1
"""Part of every encoding, so a future change of the encoding cannot be confused with it."""
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                   allow_nan=False)
"""What `json.dumps` with these options builds on every call; built once, the same output."""
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_ENCODE_DATA: Any = None if _C_MAKE_ENCODER is None else _C_MAKE_ENCODER(
    None, _CANONICAL_JSON.default, json.encoder.encode_basestring, None, ":", ",", True, False,
    False,
)
"""The C encoder `_CANONICAL_JSON.encode` builds on every call, built once (without its check
for circular references, which flat event data cannot have): called with a dict and 0, the
chunks of the same text."""


def canonical_event(*, session_id: str, sequence: int, event_type: str, occurred_at: datetime,
                    data: Mapping[str, Any], prev_hash: str) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, UTF-8, times in UTC."""
    document = {
        "v": CHAIN_VERSION,
        "session_id": session_id,
        "sequence": sequence,
        "event_type": event_type,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "data": dict(data),
        "prev_hash": prev_hash,
    }
    return _CANONICAL_JSON.encode(document).encode()


def event_hash(*, session_id: str, sequence: int, event_type: str, occurred_at: datetime,
               data: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 (hex) of the canonical encoding."""
    return hashlib.sha256(canonical_event(
        session_id=session_id, sequence=sequence, event_type=event_type,
        occurred_at=occurred_at, data=data, prev_hash=prev_hash,
    )).hexdigest()


class EventEncoding(NamedTuple):
    """An event's canonical encoding, cut around the value of `prev_hash`.

    `prefix + prev_hash + suffix` is `canonical_event(..., prev_hash=prev_hash)` for any
    `prev_hash` that JSON writes as it is (the hex digits of a hash, or `GENESIS`), so the
    store can send the two parts and let the database hash the event against the parent
    hash it locks and reads itself, in the statement that inserts the row.
    """

    data: str
    """The event's data as the encoding holds it: canonical JSON, also what the store writes."""
    prefix: bytes
    """Everything up to the opening quote of the `prev_hash` value, included."""
    suffix: bytes
    """Everything from its closing quote on."""

    def hash(self, prev_hash: str) -> str:
        """`event_hash` of the event after `prev_hash`."""
        return hashlib.sha256(self.prefix + prev_hash.encode() + self.suffix).hexdigest()


def canonical_parts(*, session_id: str, sequence: int, event_type: str, occurred_at: datetime,
                    data: Mapping[str, Any]) -> EventEncoding:
    """`canonical_event` without its `prev_hash` value: the parts before and after it.

    Put together field by field, in the order `canonical_event` sorts the keys into and
    with the same encoder for every value, which is how JSON encodes a dict with sorted keys;
    it saves building and sorting the document on the store's hot path, and the tests check
    it against `canonical_event` byte for byte.
    """
    data_json, prefix, suffix = _cut(session_id, sequence, event_type, occurred_at, data)
    return EventEncoding(data_json, prefix.encode(), suffix.encode())


def _cut(session_id: str, sequence: int, event_type: str, occurred_at: datetime,
         data: Mapping[str, Any]) -> tuple[str, str, str]:
    """The canonical data, and the canonical encoding as text before and after `prev_hash`."""
    text = json.encoder.encode_basestring  # what the encoder writes a string with
    data_json = canonical_data(data)
    if occurred_at.tzinfo is not UTC:  # astimezone(UTC) returns a time already in UTC as is
        occurred_at = occurred_at.astimezone(UTC)
    prefix = (
        '{"data":' + data_json + ',"event_type":' + text(event_type)
        + ',"occurred_at":' + text(occurred_at.isoformat(timespec="microseconds"))
        + ',"prev_hash":"'
    )
    suffix = (
        f'","sequence":{int.__repr__(sequence)},"session_id":{text(session_id)}'
        f',"v":{CHAIN_VERSION}}}'
    )
    return data_json, prefix, suffix


def canonical_data(data: Mapping[str, Any]) -> str:
    """An event's data as `canonical_event` encodes it (and the store writes it)."""
    if _ENCODE_DATA is None:
        return _CANONICAL_JSON.encode(dict(data))
    return "".join(_ENCODE_DATA(data if type(data) is dict else dict(data), 0))


@dataclass(frozen=True)
class ChainRow:
    """One stored audit row, as verification reads it."""

    session_id: str
    """The session (trail) the row belongs to."""
    sequence: int
    """Its place in the trail."""
    event_type: str
    """What happened."""
    occurred_at: datetime
    """When, on the workflow's clock."""
    data: Mapping[str, Any]
    """The event's details."""
    prev_hash: str | None
    """Stored hash of the previous row (None: the row was written without a chain)."""
    hash: str | None
    """Stored hash of this row."""

    def computed_hash(self, *, sequence: int | None = None) -> str:
        """The hash this row's content implies (optionally as if at another place)."""
        return event_hash(
            session_id=self.session_id,
            sequence=self.sequence if sequence is None else sequence,
            event_type=self.event_type,
            occurred_at=self.occurred_at,
            data=self.data,
            prev_hash=self.prev_hash or "",
        )


@dataclass(frozen=True)
class ChainReport:
    """What verification found for one session."""

    session_id: str
    """The session verified."""
    rows: int
    """Rows read."""
    head: str | None
    """Hash of the last row (the value to keep elsewhere as an anchor), if any."""
    problem: str | None = None
    """The first row that is changed, missing or inserted, in words; None when intact."""
    anchor: str | None = None
    """What outside the chain vouches for it (a signed checkpoint), when checked."""

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return self.problem is None


def verify_chain(session_id: str, rows: Sequence[ChainRow], *,
                 closed: bool = False) -> ChainReport:
    """Recompute the session's chain and name the first row that does not fit.

    `rows` are ordered by sequence. `closed` says the session is known to have closed
    elsewhere (its attendance row), so a trail without its `closed` event lost rows at the end.
    """
    head = rows[-1].hash if rows else None
    hashes: list[str] = []
    for index, row in enumerate(rows):
        problem = _row_problem(row, index, hashes,
                               previous_type=rows[index - 1].event_type if index else None)
        if problem is not None:
            return ChainReport(session_id, len(rows), head, problem)
        hashes.append(row.hash or "")
    if closed and (not rows or rows[-1].event_type != "closed"):
        return ChainReport(session_id, len(rows), head,
                           f"row {len(rows) + 1} is missing: the session closed but its trail "
                           "has no `closed` event")
    return ChainReport(session_id, len(rows), head)


def _row_problem(row: ChainRow, index: int, hashes: Sequence[str],
                 previous_type: str | None) -> str | None:
    """What is wrong with the row at `index`, given the verified hashes before it."""
    if previous_type == "closed":
        return f"row {row.sequence} ({row.event_type}) was inserted after the session closed"
    if row.sequence != index + 1:
        return f"row {index + 1} is missing (the trail jumps from {index} to {row.sequence})"
    return _hash_problem(row) or _link_problem(row, index, hashes)


def _hash_problem(row: ChainRow) -> str | None:
    """The row's content against its own hash (and the renumbering that would explain it)."""
    if row.hash is None:
        return (f"row {row.sequence} ({row.event_type}) has no hash: inserted or changed "
                "outside the audit store")
    if row.computed_hash() == row.hash:
        return None
    if row.computed_hash(sequence=row.sequence + 1) == row.hash:
        return f"row {row.sequence} is missing (the rows after it were renumbered to close it)"
    if row.computed_hash(sequence=row.sequence - 1) == row.hash:
        return (f"row {row.sequence - 1} was inserted (the rows after it were renumbered "
                "to make room)")
    return f"row {row.sequence} ({row.event_type}) was changed: its content does not match its hash"


def _link_problem(row: ChainRow, index: int, hashes: Sequence[str]) -> str | None:
    """The row's link against the hash of the row before it."""
    if row.prev_hash == (hashes[-1] if hashes else GENESIS):
        return None
    if index == 0:
        return (f"row {row.sequence} ({row.event_type}) does not start the chain: rows before "
                "it are missing")
    if row.prev_hash == (hashes[-2] if len(hashes) >= 2 else GENESIS):
        return f"row {row.sequence - 1} was inserted: row {row.sequence} links to row " \
            f"{row.sequence - 2}"
    return (f"row {row.sequence - 1} was changed (its hash was recomputed): row "
            f"{row.sequence} links to a different version of it")
