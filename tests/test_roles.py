"""Least privilege: the service's role may read and add to the trail, and nothing else.

Every statement the service's code runs is exercised by the other tests through the `pool`
fixture, which connects as `msr_service`; these tests show what that role may NOT do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from missed_session.domain.models import AuditEvent, AuditEventType, Outcome
from missed_session.store import roles
from missed_session.store.audit import AuditStore
from missed_session.store.database import SchemaOutOfDateError, open_pool

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _closed_trail(store: AuditStore) -> None:
    assert await store.append(AuditEvent(session_id="s-1", sequence=1,
                                         event_type=AuditEventType.SCHEDULED, occurred_at=AT))
    closed = AuditEvent(session_id="s-1", sequence=2, event_type=AuditEventType.CLOSED,
                        occurred_at=AT, data={"outcome": "attended", "attempts": 0})
    assert (await store.record_closing(closed, client_ref="c-1", therapist_id="t-1", start=AT,
                                       outcome=Outcome.ATTENDED)).new


@pytest.fixture
async def service(service_database_url: str, pool: asyncpg.Pool,
                  ) -> AsyncIterator[asyncpg.Connection]:
    await _closed_trail(AuditStore(pool))
    connection = await asyncpg.connect(service_database_url)
    yield connection
    await connection.close()


async def test_the_service_role_is_not_a_superuser(service: asyncpg.Connection) -> None:
    row = await service.fetchrow(
        "SELECT current_user AS name, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
        " FROM pg_roles WHERE rolname = current_user"
    )
    assert row is not None
    assert row["name"] == roles.SERVICE
    for attribute in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls"):
        assert not row[attribute], attribute


TRAIL_TABLES = {"audit_events": "hash", "audit_purges": "requested_by", "attendance": "outcome",
                "follow_up_plans": "plan", "schema_migrations": "name"}
"""The append-only tables, each with a column to try to change."""
STATEMENTS = (
    "UPDATE {table} SET {column} = {column}",
    "DELETE FROM {table}",
    "TRUNCATE {table}",
    "ALTER TABLE {table} DISABLE TRIGGER ALL",
    "ALTER TABLE {table} ADD COLUMN forged text",
    "DROP TABLE {table}",
    "LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE",
)


async def test_the_service_role_cannot_change_the_trail(service: asyncpg.Connection) -> None:
    """Every statement is refused by privilege (before any trigger could be asked)."""
    for table, column in TRAIL_TABLES.items():
        before = await service.fetch(f"SELECT * FROM {table}")
        for statement in STATEMENTS:
            sql = statement.format(table=table, column=column)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):  # noqa: PT012
                async with service.transaction():
                    await service.execute(sql)
                pytest.fail(f"the service role may run: {sql}")
        assert await service.fetch(f"SELECT * FROM {table}") == before
        for privilege in ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES"):
            assert not await service.fetchval(
                "SELECT has_table_privilege(current_user, $1, $2)", table, privilege
            ), (table, privilege)


async def test_the_service_role_cannot_switch_triggers_off(service: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="session_replication_role"):
        await service.execute("SET session_replication_role = replica")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service.execute("SELECT set_config('session_replication_role', 'replica', false)")
    assert await service.fetchval("SHOW session_replication_role") == "origin"


async def test_the_service_role_cannot_grant_itself_more(service: asyncpg.Connection) -> None:
    # A GRANT by a non-owner grants nothing (PostgreSQL only warns).
    await service.execute(f"GRANT UPDATE ON audit_events TO {roles.SERVICE}")
    assert not await service.fetchval(
        "SELECT has_table_privilege(current_user, 'audit_events', 'UPDATE')"
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service.execute(f"GRANT {roles.OWNER} TO {roles.SERVICE}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service.execute("CREATE TABLE audit_shadow (x int)")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service.execute(
            "CREATE OR REPLACE FUNCTION refuse_audit_change() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$"
        )


async def test_the_reviewer_may_only_read(reviewer_database_url: str, pool: asyncpg.Pool,
                                          ) -> None:
    await _closed_trail(AuditStore(pool))
    reviewer = await asyncpg.connect(reviewer_database_url)
    try:
        assert await reviewer.fetchval("SELECT count(*) FROM audit_events") == 2
        for statement in [
            "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at)"
            " VALUES ('s-2', 1, 'scheduled', now())",
            "INSERT INTO therapist_inbox (key, session_id, therapist_id, kind, priority, title)"
            " VALUES ('k', 's-2', 't', 'alert', 'urgent', 'x')",
            "UPDATE projection_attendance SET outcome = NULL",
            "DELETE FROM channel_deliveries",
            "SELECT purge_audit_sessions(now() - interval '10 years', 6, 'me', 1)",
        ]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reviewer.execute(statement)
    finally:
        await reviewer.close()


async def test_a_service_pool_on_an_unmigrated_database_names_the_owner_setting(
    postgres_server_url: str,
) -> None:
    name = "t_unmigrated_roles"
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}" OWNER {roles.OWNER}')
    url = postgres_server_url.replace("/postgres?", f"/{name}?")
    service_url = url.replace("postgresql://postgres:@", f"postgresql://{roles.SERVICE}:@")
    owner_url = url.replace("postgresql://postgres:@", f"postgresql://{roles.OWNER}:@")
    try:
        with pytest.raises(SchemaOutOfDateError, match="database_owner_url"):
            await open_pool(service_url)
        pool = await open_pool(service_url, owner_url=owner_url)  # migrated by the owner
        try:
            await _closed_trail(AuditStore(pool))
            owner = await pool.fetchval("SELECT tableowner FROM pg_tables"
                                        " WHERE tablename = 'audit_events'")
            assert owner == roles.OWNER
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_service_role_cannot_backdate_a_row(service: asyncpg.Connection) -> None:
    """`recorded_at` is filled by its default only: no row forged into the purge's reach."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service.execute(
            "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at,"
            " recorded_at) VALUES ('s-9', 1, 'scheduled', $1, $1)", AT.replace(year=2010),
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service.execute(
            "INSERT INTO audit_purges (cutoff, retention_years, requested_by, sessions,"
            " events, session_ids) VALUES (now(), 6, 'me', 0, 0, '{}')"
        )


def test_the_compose_init_script_creates_the_same_roles() -> None:
    """The compose file's init script (shell, run by the postgres image) and `roles` agree."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    script = (root / "scripts" / "postgres_init_roles.sh").read_text()
    for role in roles.ROLES:
        assert f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in script
    assert f"CREATE DATABASE missed_session OWNER {roles.OWNER}" in script
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = compose["services"]
    # The URLs are compose secrets written by deploy/make-secrets.sh (tests/test_compose.py
    # runs it and checks each URL names its role): the service role's for the workers, the
    # owner's for the migrate step alone.
    def targets(name: str) -> set[str]:
        return {secret["target"] for secret in services[name]["secrets"]
                if isinstance(secret, dict)}
    assert "MSR_DATABASE_URL" in targets("worker")
    assert "MSR_DATABASE_OWNER_URL" not in targets("worker")
    assert "MSR_DATABASE_OWNER_URL" in targets("migrate")
    make_secrets = (root / "deploy" / "make-secrets.sh").read_text()
    assert f"postgresql://{roles.SERVICE}:" in make_secrets
    assert f"postgresql://{roles.OWNER}:" in make_secrets
    mounts = services["audit-postgres"]["volumes"]
    assert any(m.startswith("./scripts/postgres_init_roles.sh:/docker-entrypoint-initdb.d/")
               for m in mounts)
