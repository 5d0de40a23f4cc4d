#!/bin/sh
# One-shot (temporalio/admin-tools): create and migrate Temporal's two schemas on PostgreSQL.
# Modelled on temporalio/samples-server compose/scripts/setup-postgres.sh. Idempotent:
# `create` of an existing database fails harmlessly, `setup-schema -v 0.0` is a no-op on a
# versioned schema, `update-schema` applies only what is missing (also after an upgrade of
# the server image: run this before the new server starts).
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
PORT="${DB_PORT:-5432}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$PORT" "$@"
}

for database in temporal temporal_visibility; do
  case "$database" in
    temporal) versioned="$SCHEMA_DIR/temporal/versioned" ;;
    *) versioned="$SCHEMA_DIR/visibility/versioned" ;;
  esac
  sql --db "$database" create || echo "database $database exists"
  sql --db "$database" setup-schema -v 0.0
  sql --db "$database" update-schema -d "$versioned"
done
echo "temporal and temporal_visibility schemas are up to date"
