"""The client directory and consent history in PostgreSQL (asyncpg, no SQL built from text).

A directory entry is current state: an update replaces its contact points and emergency
contacts in one transaction, and logs the names of the fields that changed in
`client_changes`. Consent records are only ever inserted (the table's trigger refuses
UPDATE, DELETE and TRUNCATE).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from missed_session.domain.clients import (
    ClientRecord,
    ConsentEntry,
    ConsentRecord,
    ContactUse,
    DirectoryContact,
    EmailPoint,
    PhonePoint,
    PostalAddress,
)
from missed_session.domain.models import ConsentScope
from missed_session.store.database import Connection

RECORD_PREFIX = "consent-"
_CONSENT_COLUMNS = ("record_seq", "client_ref", "subject", "contact_point", "scope", "granted",
                    "effective_at", "source", "recorded_by", "recorded_at")
_BEARS_ON = (
    # The consent records that can bear on client $1: their own, and the number-wide
    # STOP/START records for the numbers they use now.
    "r.client_ref = $1 OR (r.client_ref IS NULL AND r.contact_point IN"
    " (SELECT value FROM client_contact_points WHERE client_ref = $1))"
)
_ENTRY = (
    # A directory entry in one statement: its row, and its contact points and emergency
    # contacts as JSON arrays of arrays (asyncpg decodes json without a type lookup; an
    # array of records would cost three introspection statements on each new connection).
    "SELECT c.first_name, c.time_zone, c.flags, c.postal_address::text AS postal_address,"
    " (SELECT json_agg(json_build_array(p.kind, p.value, p.use, p.verified)"
    "  ORDER BY p.kind, p.position) FROM client_contact_points p"
    "  WHERE p.client_ref = c.client_ref) AS points,"
    " (SELECT json_agg(json_build_array(e.name, e.phone, e.relationship) ORDER BY e.position)"
    "  FROM client_emergency_contacts e WHERE e.client_ref = c.client_ref) AS contacts"
)
_WHERE_CLIENT = " FROM clients c WHERE c.client_ref = $1"
_GET = _ENTRY + _WHERE_CLIENT
_GET_WITH_HISTORY = (
    _ENTRY  # noqa: S608 (constants only)
    + ", (SELECT json_agg(json_build_array(r.record_seq, r.client_ref, r.subject,"
    " r.contact_point, r.scope, r.granted, r.effective_at, r.source, r.recorded_by,"
    " r.recorded_at) ORDER BY r.record_seq) FROM consent_records r WHERE " + _BEARS_ON
    + ") AS consents" + _WHERE_CLIENT
)
"""`_ENTRY` and the consent history, its records' columns in `_CONSENT_COLUMNS`' order."""
_HISTORY = (
    "SELECT * FROM consent_records r WHERE " + _BEARS_ON  # noqa: S608 (constants only)
    + " ORDER BY r.record_seq"
)
RESTORED_AFTER_OPT_OUT = """
SELECT EXISTS (
    SELECT 1 FROM consent_records c
    WHERE c.subject = 'text' AND c.granted AND c.source <> 'booking'
      AND (c.client_ref = $1 OR (c.client_ref IS NULL AND c.contact_point IN
           (SELECT value FROM client_contact_points WHERE client_ref = $1)))
      AND c.effective_at > (
          SELECT max(e.occurred_at) FROM audit_events e
          WHERE e.event_type = 'opted_out' AND e.data->>'channel' = 'text'
            AND e.session_id IN (SELECT session_id FROM audit_events
                                 WHERE event_type = 'scheduled'
                                   AND data->>'client_ref' = $1)))
"""


class UnknownClientError(LookupError):
    """No directory entry has this client ref."""

    def __init__(self, client_ref: str) -> None:
        super().__init__(f"client_ref: no client {client_ref!r} in the directory")
        self.client_ref = client_ref


class ClientExistsError(ValueError):
    """A client with this ref is already in the directory (use update)."""

    def __init__(self, client_ref: str) -> None:
        super().__init__(f"client_ref: client {client_ref!r} is already in the directory")
        self.client_ref = client_ref


class ClientDirectory:
    """Reads and writes the directory and the consent history."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, client_ref: str) -> ClientRecord | None:
        """The client's entry, or None."""
        async with self._pool.acquire() as connection:
            return await _get(connection, client_ref)

    async def add(self, record: ClientRecord, *, source: str, recorded_by: str,
                  consents: Sequence[ConsentEntry] = ()) -> list[ConsentRecord]:
        """Create an entry (and its first consent records) in one transaction."""
        async with self._pool.acquire() as connection, connection.transaction():
            if await _get(connection, record.ref) is not None:
                raise ClientExistsError(record.ref)
            await connection.execute(
                "INSERT INTO clients (client_ref, first_name, time_zone, flags, postal_address)"
                " VALUES ($1, $2, $3, $4, $5::jsonb)",
                record.ref, record.first_name, record.time_zone, list(record.flags),
                _address(record),
            )
            await _write_points(connection, record)
            await _log_change(connection, record.ref, "created", sorted(ClientRecord.model_fields),
                              source, recorded_by)
            return [await _append(connection, entry) for entry in consents]

    async def put(self, record: ClientRecord, *, source: str, recorded_by: str,
                  consents: Sequence[ConsentEntry] = (), must_exist: bool = True,
                  ) -> tuple[list[str], list[ConsentRecord]]:
        """Replace an entry (create it unless `must_exist`); returns the changed fields."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", record.ref)
            held = await _get(connection, record.ref)
            if held is None and must_exist:
                raise UnknownClientError(record.ref)
            if held is None:
                await connection.execute(
                    "INSERT INTO clients (client_ref, first_name, time_zone, flags,"
                    " postal_address) VALUES ($1, $2, $3, $4, $5::jsonb)",
                    record.ref, record.first_name, record.time_zone, list(record.flags),
                    _address(record),
                )
                changed = sorted(ClientRecord.model_fields)
                action = "created"
            else:
                changed = [name for name in ClientRecord.model_fields
                           if getattr(held, name) != getattr(record, name)]
                action = "updated"
                await connection.execute(
                    "UPDATE clients SET first_name = $2, time_zone = $3, flags = $4,"
                    " postal_address = $5::jsonb, updated_at = now() WHERE client_ref = $1",
                    record.ref, record.first_name, record.time_zone, list(record.flags),
                    _address(record),
                )
                await connection.execute(
                    "DELETE FROM client_contact_points WHERE client_ref = $1", record.ref)
                await connection.execute(
                    "DELETE FROM client_emergency_contacts WHERE client_ref = $1", record.ref)
            await _write_points(connection, record)
            if changed:
                await _log_change(connection, record.ref, action, changed, source, recorded_by)
            written = [await _append(connection, entry) for entry in consents]
            return changed, written

    async def append_consent(self, entry: ConsentEntry) -> ConsentRecord:
        """Record one consent (refused for a client the directory does not know)."""
        async with self._pool.acquire() as connection, connection.transaction():
            if entry.client_ref is not None and await _get(connection, entry.client_ref) is None:
                raise UnknownClientError(entry.client_ref)
            return await _append(connection, entry)

    async def history(self, client_ref: str) -> list[ConsentRecord]:
        """Every record that can bear on the client, oldest first.

        Their own, and the number-wide STOP/START records for the numbers they use now.
        """
        rows = await self._pool.fetch(_HISTORY, client_ref)
        return [_consent(row) for row in rows]

    async def get_with_history(
        self, client_ref: str,
    ) -> tuple[ClientRecord, list[ConsentRecord]] | None:
        """The client's entry and the consent history bearing on it, or None (no entry).

        What `get` and then `history` return, read in one statement (one round trip, one
        snapshot): what a step reads just before it reaches the client.
        """
        row = await self._pool.fetchrow(_GET_WITH_HISTORY, client_ref)
        if row is None:
            return None
        history = []
        for values in _rows(row["consents"]):
            fields = dict(zip(_CONSENT_COLUMNS, values, strict=True))
            for instant in ("effective_at", "recorded_at"):  # as asyncpg reads a timestamptz
                fields[instant] = datetime.fromisoformat(fields[instant]).astimezone(UTC)
            history.append(_consent(fields))
        return _entry(client_ref, row), history

    async def clients_using(self, number: str) -> list[str]:
        """The refs of every client with this contact point."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT client_ref FROM client_contact_points WHERE value = $1"
            " ORDER BY client_ref", number)
        return [row["client_ref"] for row in rows]

    async def restored_after_trail_opt_out(self, client_ref: str) -> bool:
        """Whether texts were consented again after the client's last trail opt-out.

        A trail opt-out is a STOP sent to a session as its text reply; a START or the
        client's request counts as consent again, a booking's snapshot does not.
        """
        restored: bool | None = await self._pool.fetchval(RESTORED_AFTER_OPT_OUT, client_ref)
        return bool(restored)

    async def changes(self, client_ref: str) -> list[asyncpg.Record]:
        """The entry's change log, oldest first."""
        return list(await self._pool.fetch(
            "SELECT action, fields, source, recorded_by, recorded_at FROM client_changes"
            " WHERE client_ref = $1 ORDER BY change_id", client_ref))


async def _get(connection: Connection, client_ref: str) -> ClientRecord | None:
    row = await connection.fetchrow(_GET, client_ref)
    return None if row is None else _entry(client_ref, row)


def _entry(client_ref: str, row: asyncpg.Record) -> ClientRecord:
    """The entry from a row of `_ENTRY` (points and contacts as arrays of records)."""
    points = _rows(row["points"])
    return ClientRecord(
        ref=client_ref, first_name=row["first_name"], time_zone=row["time_zone"],
        flags=tuple(row["flags"]),
        postal_address=(None if row["postal_address"] is None
                        else PostalAddress.model_validate_json(row["postal_address"])),
        phones=tuple(PhonePoint(number=value, use=ContactUse(use), verified=verified)
                     for kind, value, use, verified in points if kind == "phone"),
        emails=tuple(EmailPoint(address=value, use=ContactUse(use), verified=verified)
                     for kind, value, use, verified in points if kind == "email"),
        emergency_contacts=tuple(DirectoryContact(name=name, phone=phone,
                                                  relationship=relationship)
                                 for name, phone, relationship in _rows(row["contacts"])),
    )


def _rows(aggregated: str | None) -> list[list[Any]]:
    """A `json_agg` of arrays, decoded (NULL: no rows)."""
    return [] if aggregated is None else list(json.loads(aggregated))


def _address(record: ClientRecord) -> str | None:
    """The postal address as the column's JSON (None: no address on file)."""
    address = record.postal_address
    return None if address is None else address.model_dump_json()


async def _write_points(connection: Connection, record: ClientRecord) -> None:
    await connection.executemany(
        "INSERT INTO client_contact_points (client_ref, position, kind, value, use, verified)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [(record.ref, i, "phone", p.number, p.use.value, p.verified)
         for i, p in enumerate(record.phones)]
        + [(record.ref, i, "email", str(e.address), e.use.value, e.verified)
           for i, e in enumerate(record.emails)],
    )
    await connection.executemany(
        "INSERT INTO client_emergency_contacts (client_ref, position, name, phone, relationship)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(record.ref, i, c.name, c.phone, c.relationship)
         for i, c in enumerate(record.emergency_contacts)],
    )


async def _log_change(connection: Connection, client_ref: str, action: str,
                      fields: list[str], source: str, recorded_by: str) -> None:
    await connection.execute(
        "INSERT INTO client_changes (client_ref, action, fields, source, recorded_by)"
        " VALUES ($1, $2, $3, $4, $5)", client_ref, action, fields, source, recorded_by)


async def _append(connection: Connection, entry: ConsentEntry) -> ConsentRecord:
    row = await connection.fetchrow(
        "INSERT INTO consent_records (client_ref, subject, contact_point, scope, granted,"
        " effective_at, source, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " RETURNING *",
        entry.client_ref, entry.subject.value, entry.contact_point,
        entry.scope.value if entry.scope else None, entry.granted, entry.effective_at,
        entry.source.value, entry.recorded_by,
    )
    assert row is not None  # INSERT ... RETURNING returns the row
    return _consent(row)


def _consent(row: asyncpg.Record | Mapping[str, Any]) -> ConsentRecord:
    return ConsentRecord(
        record_id=f"{RECORD_PREFIX}{row['record_seq']}", client_ref=row["client_ref"],
        subject=row["subject"], contact_point=row["contact_point"],
        scope=ConsentScope(row["scope"]) if row["scope"] else None, granted=row["granted"],
        effective_at=row["effective_at"], source=row["source"],
        recorded_by=row["recorded_by"], recorded_at=row["recorded_at"],
    )
