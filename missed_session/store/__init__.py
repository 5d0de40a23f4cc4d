"""PostgreSQL persistence: connection, migrations and the append-only audit store."""
