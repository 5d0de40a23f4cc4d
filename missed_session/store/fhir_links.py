"""Which directory client an EHR's Patient is: by its reference or by an identifier."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import asyncpg


class LinkKind(StrEnum):
    """How a Patient is named."""

    REFERENCE = "reference"
    """Its absolute reference, `<FHIR base>/Patient/<id>` (or `Patient/<id>` without a base)."""
    IDENTIFIER = "identifier"
    """An identifier, `<system>|<value>` (the system may be empty)."""


Link = tuple[LinkKind, str]
"""One way of naming a Patient."""


class FhirLinks:
    """The `client_fhir_links` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, links: Iterable[Link]) -> str | None:
        """The client ref any of `links` leads to (the first of them that is known)."""
        wanted = list(links)
        if not wanted:
            return None
        rows = await self._pool.fetch(
            "SELECT kind, key, client_ref FROM client_fhir_links"
            " WHERE (kind, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [kind.value for kind, _ in wanted], [key for _, key in wanted])
        found = {(row["kind"], row["key"]): str(row["client_ref"]) for row in rows}
        return next((found[(kind.value, key)] for kind, key in wanted
                     if (kind.value, key) in found), None)

    async def link(self, client_ref: str, links: Iterable[Link]) -> None:
        """Record that `links` name `client_ref` (a link already held is moved to it)."""
        async with self._pool.acquire() as connection, connection.transaction():
            for kind, key in links:
                await connection.execute(
                    "INSERT INTO client_fhir_links (kind, key, client_ref) VALUES ($1, $2, $3)"
                    " ON CONFLICT (kind, key) DO UPDATE SET client_ref = EXCLUDED.client_ref,"
                    " linked_at = now()", kind.value, key, client_ref)
