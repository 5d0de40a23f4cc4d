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
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.database import SchemaOutOfDateError, open_pool

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _closed_trail(store: AuditStore) -> None:
    assert (await store.record([AuditEvent(session_id="s-1", sequence=1,
                                         event_type=AuditEventType.SCHEDULED, occurred_at=AT)])).new
    closed = AuditEvent(session_id="s-1", sequence=2, event_type=AuditEventType.CLOSED,
                        occurred_at=AT, data={"outcome": "attended", "attempts": 0})
    assert (await store.record([closed], attendance=Attendance(
        client_ref="c-1", therapist_id="t-1", start=AT, outcome=Outcome.ATTENDED))).new


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


EXPECTED_SERVICE = {
    "audit_events": {"SELECT", "INSERT (columns)"},  # every column but recorded_at
    "audit_purges": {"SELECT"},
    "schema_migrations": {"SELECT"},
}
"""Where the service's privileges differ from `SELECT, INSERT` (the append-only tables) or
`SELECT, INSERT, UPDATE, DELETE` (the working tables)."""
APPEND_ONLY_TABLES = {
    "audit_events", "audit_purges", "audit_checkpoints", "checkpoint_log", "history_archive",
    "integrity_findings",
    "attendance", "follow_up_plans", "roster_versions", "notice_refusals",
    "console_access_log", "consent_records", "client_changes", "schema_migrations",
}
REVIEWER_READS = {
    "audit_events", "audit_checkpoints", "checkpoint_log", "integrity_findings", "audit_purges",
    "history_archive", "attendance", "follow_up_plans", "projection_attendance",
    "projection_open_tasks", "console_access_log", "notice_refusals", "schema_migrations",
}
CREDENTIAL_TABLES = {"console_accounts", "console_sessions", "notice_codes"}
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


async def _effective(connection: asyncpg.Connection, role: str) -> dict[str, set[str]]:
    """Every table of the schema, with the privileges `role` effectively holds on it."""
    tables = [row["tablename"] for row in await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
    held: dict[str, set[str]] = {}
    for table in tables:
        name = f'public."{table}"'
        held[table] = {privilege for privilege in PRIVILEGES if await connection.fetchval(
            "SELECT has_table_privilege($1, $2, $3)", role, name, privilege)}
        for privilege in ("SELECT", "INSERT", "UPDATE"):  # granted on some columns only
            if privilege not in held[table] and await connection.fetchval(
                    "SELECT has_any_column_privilege($1, $2, $3)", role, name, privilege):
                held[table].add(f"{privilege} (columns)")
    return held


def _expected(role: str, table: str) -> set[str]:
    if role == roles.OWNER:
        return set(PRIVILEGES)
    if role == roles.REVIEWER:
        return {"SELECT"} if table in REVIEWER_READS else set()
    if table in EXPECTED_SERVICE:
        return EXPECTED_SERVICE[table]
    if table in APPEND_ONLY_TABLES:
        return {"SELECT", "INSERT"}
    return {"SELECT", "INSERT", "UPDATE", "DELETE"}


async def test_each_role_holds_exactly_the_expected_privileges(
    database_url: str, pool: asyncpg.Pool,
) -> None:
    """The whole table, role by role: a grant added or lost anywhere fails here by name."""
    del pool  # migrated and granted
    admin = await asyncpg.connect(database_url)
    try:
        differences = []
        for role in roles.ROLES:
            for table, held in (await _effective(admin, role)).items():
                if held != _expected(role, table):
                    differences.append((role, table, sorted(held),
                                        sorted(_expected(role, table))))
        assert not differences, differences
        assert roles.REVIEWER_TABLES == REVIEWER_READS
        assert roles.APPEND_ONLY == APPEND_ONLY_TABLES
        for table in CREDENTIAL_TABLES:
            assert not await admin.fetchval("SELECT has_table_privilege($1, $2, 'SELECT')",
                                            roles.REVIEWER, table), table
        # Functions: the service may run the purge, nobody else but the owner any function.
        for role, may in ((roles.SERVICE, True), (roles.REVIEWER, False)):
            assert await admin.fetchval(
                "SELECT has_function_privilege($1, 'purge_audit_sessions(timestamptz, integer,"
                " text, integer)', 'EXECUTE')", role) is may
    finally:
        await admin.close()


async def test_every_append_only_table_refuses_truncate_even_to_its_owner(
    owner_database_url: str, pool: asyncpg.Pool,
) -> None:
    del pool
    owner = await asyncpg.connect(owner_database_url)
    try:
        guarded = {row["table"] for row in await owner.fetch(
            "SELECT c.relname AS table FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND (t.tgtype & 32) <> 0")}  # TRIGGER_TYPE_TRUNCATE
        assert guarded >= APPEND_ONLY_TABLES, APPEND_ONLY_TABLES - guarded
        for table in sorted(APPEND_ONLY_TABLES):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(f"TRUNCATE {table} CASCADE")
    finally:
        await owner.close()


async def test_the_reviewer_cannot_read_credentials(reviewer_database_url: str,
                                                    pool: asyncpg.Pool) -> None:
    del pool
    reviewer = await asyncpg.connect(reviewer_database_url)
    try:
        for table in sorted(CREDENTIAL_TABLES | {"clients", "client_contact_points"}):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reviewer.fetch(f"SELECT * FROM {table}")
        assert await reviewer.fetchval("SELECT count(*) FROM checkpoint_log") == 0
    finally:
        await reviewer.close()
