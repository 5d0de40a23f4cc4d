"""Helpers first written for tests/conftest.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.codec.encryption import EncryptionCodec, parse_key
from missed_session.temporal import search_attributes
from missed_session.temporal.client import data_converter

BIN = Path(sys.executable).parent


TEST_KEYS = {"test-key-1": "dGVzdC1vbmx5LWtleS1ub3QtZm9yLXJlYWwtY2xpZW4="}
"""A fixed key for tests only (32 bytes, base64): tests run with payloads encrypted."""


TEST_CONVERTER = data_converter(
    EncryptionCodec({k: parse_key(k, v) for k, v in TEST_KEYS.items()}, "test-key-1")
)


def installed_binary(name: str) -> str:
    """A binary installed into this environment by the project's own dependencies."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run: pip install -e '.[dev]'")
    return found


def server_folder(prefix: str) -> Path:
    """A new folder under /tmp that an embedded PostgreSQL started as root can use.

    pytest's own folders are 0700, which the server's system user cannot search, and the
    embedded stack refuses to chmod folders it does not own (missed_session/store/embedded.py).
    Searchable (not listable) by others, as the embedded stack makes its data directory.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o711)
    return folder


async def start_test_server() -> WorkflowEnvironment:
    """A time-skipping test server with the service's converter and search attributes."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER,
        test_server_existing_path=installed_binary("temporal-test-server"),
    )
    await search_attributes.register(env.client)
    return env



async def start_dev_server() -> WorkflowEnvironment:
    """A Temporal dev server (real clock, real visibility) with the service's converter.

    Its search attributes are registered by flags at start: the dev server takes them
    there, and a session that upserts one never meets an unregistered attribute.
    """
    return await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER,
        dev_server_existing_path=installed_binary("temporal"),
        dev_server_extra_args=search_attributes.dev_server_flags(),
    )


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server per test module that imports this fixture (it starts in seconds).

    Per module, as `time_skipping_env` (tests/conftest.py), so work a module leaves behind
    on it cannot reach another module's tests.
    """
    env = await start_dev_server()
    yield env
    await env.shutdown()
