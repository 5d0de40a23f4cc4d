"""Helpers first written for tests/test_dev_up.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Under /tmp itself, not pytest's 0700 folders the embedded PostgreSQL's user cannot
    search (see tests/conftest.py)."""
    folder = Path(tempfile.mkdtemp(prefix="msr-test-up-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)

