"""The embedded stack's files holding health data or keys are owner-only."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from demo import embedded_temporal
from missed_session.codec.server import embedded_ui_secret
from missed_session.config import Settings
from missed_session.file_modes import owner_only_umask, restrict_files
from missed_session.local_secrets import ExposedSecretError, read_or_create


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_temporals_database_and_the_keys_are_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    settings = Settings(data_dir=data_dir, temporal_address=f"127.0.0.1:{free_port()}",
                        ui_port=free_port(), codec_server_port=free_port(), metrics_port=0,
                        dev_server_http_port=free_port(), dev_server_metrics_port=free_port())
    before = current_umask()
    async with embedded_temporal(settings) as env:
        await env.client.workflow_service.get_system_info(GetSystemInfoRequest())
        embedded_ui_secret(data_dir)
        files = sorted(p.name for p in data_dir.iterdir())
        assert "temporal.db" in files
        assert "encryption-keys.json" in files
        assert any(name.startswith("temporal.db-") for name in files), files  # the WAL
        for path in data_dir.iterdir():
            assert mode(path) == 0o600, (path.name, oct(mode(path)))
    assert current_umask() == before  # the stack's umask did not leak into this process


def test_restrict_files_narrows_only_what_is_open(tmp_path: Path) -> None:
    (tmp_path / "temporal.db").write_text("")
    (tmp_path / "temporal.db").chmod(0o644)
    (tmp_path / "temporal.db-wal").write_text("")
    (tmp_path / "temporal.db-wal").chmod(0o600)
    (tmp_path / "other").write_text("")
    (tmp_path / "other").chmod(0o644)
    assert restrict_files(tmp_path, "temporal.db*") == [tmp_path / "temporal.db"]
    assert mode(tmp_path / "temporal.db") == 0o600
    assert mode(tmp_path / "other") == 0o644


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    first = read_or_create(path)
    assert mode(path) == 0o600
    assert read_or_create(path) == first
    path.chmod(0o644)
    with pytest.raises(ExposedSecretError, match=str(path)):
        read_or_create(path)


def current_umask() -> int:
    value = os.umask(0)
    os.umask(value)
    return value


def test_the_umask_is_restored(tmp_path: Path) -> None:
    before = current_umask()
    with owner_only_umask():
        assert current_umask() == 0o077
        (tmp_path / "inside").write_text("x")
    assert current_umask() == before
    assert mode(tmp_path / "inside") == 0o600
