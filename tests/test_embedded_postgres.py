"""The embedded PostgreSQL changes no folder outside its data directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from missed_session.store import embedded

root_only = pytest.mark.skipif(os.geteuid() != 0,
                               reason="only root starts the server as another user")


def _modes(path: Path) -> dict[Path, int]:
    return {folder: stat.S_IMODE(folder.stat().st_mode) for folder in path.parents}


@root_only
def test_a_data_directory_under_a_private_folder_is_refused_not_chmodded(
    tmp_path: Path,
) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    data_dir = private / "stack" / ".data"
    data_dir.mkdir(parents=True)
    before = _modes(data_dir)
    with pytest.raises(embedded.UnreachableDataDirError, match=str(private)):
        embedded.start(data_dir)
    assert _modes(data_dir) == before
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not (data_dir / "postgres" / "PG_VERSION").exists()


def test_the_running_cluster_is_owner_only(postgres_server_url: str) -> None:
    """The tests' own cluster, started by `embedded.start`: its data is 0700, the data
    directory holding it lets others through but not list it."""
    socket_dir = Path(postgres_server_url.rpartition("host=")[2])
    assert (socket_dir / "PG_VERSION").exists()
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    data_dir_mode = stat.S_IMODE(socket_dir.parent.stat().st_mode)
    assert data_dir_mode == (0o711 if os.geteuid() == 0 else 0o700)
    assert stat.S_IMODE(Path("/tmp").stat().st_mode) == 0o1777
