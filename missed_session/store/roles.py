"""Database roles: who may do what to the audit trail.

Three roles, none a superuser:

- `msr_owner` owns the schema; migrations run as it, and nothing else does.
- `msr_service` is what the worker, the starter and the HTTP API connect as. On the trail
  and the records derived from it once (`APPEND_ONLY`) it may only SELECT and INSERT; on the
  service's working tables (projections, delivery ledger, inbox, the simulated phone) it
  may also UPDATE and DELETE rows. It may not TRUNCATE, alter, disable a trigger, or change
  `session_replication_role` (a superuser's setting). Its one way to delete audit rows is
  `purge_audit_sessions()`, which checks the retention period itself.
- `msr_reviewer` (compliance) may only SELECT, and only what a review reads
  (`REVIEWER_TABLES`: the trail, its checkpoints and log, archived histories, the records
  derived from it, the projections, the access and refusal logs). Not the credential
  tables (clinicians' password hashes, console session tokens, notice codes), nor the
  client directory or the service's working tables.

The privileges are (re)applied after every migration (`apply_grants`), table by table from
the catalogue, so a table a later migration adds gets the service's working privileges
unless it is listed in `APPEND_ONLY`. Creating the roles is a superuser's job, done once per
cluster: `bootstrap_sql` (the embedded stack runs it; the compose file's init script does
the same). See docs/security.md.
"""

from __future__ import annotations

from missed_session.store.connection import Connection

OWNER = "msr_owner"
"""Owns the schema; runs migrations."""
SERVICE = "msr_service"
"""The worker's, starter's and API's role."""
REVIEWER = "msr_reviewer"
"""The compliance reviewer's role: read only."""
ROLES = (OWNER, SERVICE, REVIEWER)

SERVICE_PRIVILEGES = {
    # Every column but `recorded_at`, which only its default (now()) fills: the service
    # cannot backdate a row into the purge's reach.
    "audit_events": "SELECT, INSERT (session_id, sequence, event_type, occurred_at, data,"
                    " prev_hash, hash)",
    "audit_purges": "SELECT",  # written only by purge_audit_sessions() (SECURITY DEFINER)
    "audit_checkpoints": "SELECT, INSERT",
    "checkpoint_log": "SELECT, INSERT",
    "integrity_findings": "SELECT, INSERT",
    "history_archive": "SELECT, INSERT",
    "attendance": "SELECT, INSERT",
    "follow_up_plans": "SELECT, INSERT",
    "roster_versions": "SELECT, INSERT",
    "notice_refusals": "SELECT, INSERT",
    "console_access_log": "SELECT, INSERT",  # who viewed which client's data: never changed
    "consent_records": "SELECT, INSERT",  # the client directory's consent history
    "client_changes": "SELECT, INSERT",
    "schema_migrations": "SELECT",
}
"""The service's privileges on the trail, its purge records, its checkpoints, archived
histories, and the per-session records written once at close: read and add, never change."""
APPEND_ONLY = frozenset(SERVICE_PRIVILEGES)
SERVICE_WORKING = "SELECT, INSERT, UPDATE, DELETE"
"""What the service may do to every other table (rows only; never TRUNCATE or DDL)."""
REVIEWER_TABLES = frozenset({
    "audit_events", "audit_checkpoints", "checkpoint_log", "integrity_findings", "audit_purges",
    "history_archive", "attendance", "follow_up_plans", "projection_attendance",
    "projection_open_tasks", "console_access_log", "notice_refusals", "schema_migrations",
})
"""What a compliance review reads (`audit verify`, `replay`, `export`, the projections, who
viewed what and which acknowledgments were refused); the reviewer may SELECT these alone.
A table a later migration adds is not readable by the reviewer until listed here."""
SERVICE_FUNCTIONS = ("purge_audit_sessions(timestamptz, integer, text, integer)",)
"""Functions the service may call; every other function of the schema is the owner's."""


def bootstrap_sql(passwords: dict[str, str] | None = None) -> list[str]:
    """Statements a superuser runs once per cluster: the three login roles, idempotently.

    `passwords` (role -> password) sets or changes their passwords; without one a role
    keeps the password it has (the embedded stack reaches PostgreSQL only through a socket
    in its own data directory).
    """
    statements = []
    for role in ROLES:
        exists = "".join(("SELECT 1 FROM pg_roles WHERE rolname = '", role, "'"))
        statements.append(
            f"DO $$ BEGIN IF NOT EXISTS ({exists}) THEN CREATE ROLE {role} LOGIN; END IF; END $$"
        )
        statements.append(
            f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            " NOBYPASSRLS"
        )
        if passwords and role in passwords:
            literal = passwords[role].replace("'", "''")
            statements.append(f"ALTER ROLE {role} PASSWORD '{literal}'")
    return statements


async def apply_grants(connection: Connection) -> None:
    """Give the service and reviewer roles exactly their privileges on every table.

    Run by the owner after migrating (a no-op where the roles do not exist, as on a
    single-role development database). Revokes first, so a privilege granted by hand is
    taken back.
    """
    present = {row["rolname"] for row in await connection.fetch(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])", [SERVICE, REVIEWER],
    )}
    if not present:
        return
    tables = [row["tablename"] for row in await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )]
    for role in sorted(present):
        await connection.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        await connection.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}")
        for table in tables:
            name = _quoted(table)
            await connection.execute(f"REVOKE ALL ON TABLE {name} FROM {role}")
            if role == REVIEWER:
                if table not in REVIEWER_TABLES:
                    continue
                privileges = "SELECT"
            else:
                privileges = SERVICE_PRIVILEGES.get(table, SERVICE_WORKING)
            await connection.execute(f"GRANT {privileges} ON TABLE {name} TO {role}")
        await connection.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        if role == SERVICE:
            await connection.execute(
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"
            )
    # Functions are executable by PUBLIC unless revoked.
    for function in SERVICE_FUNCTIONS:
        exists = await connection.fetchval("SELECT to_regprocedure($1)", function)
        if exists is None:
            continue
        await connection.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        if SERVICE in present:
            await connection.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {SERVICE}")


def _quoted(identifier: str) -> str:
    """A table name from the catalogue as an SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'
