"""Files the embedded stack writes are its owner's alone.

Temporal's SQLite database (`temporal.db` and its `-wal`/`-shm` companions) holds client
refs, risk tiers, outcomes and search attributes in plaintext, and the dev server creates
it with the default umask (0644). The stack therefore starts the dev server under an
owner-only umask (it inherits it, and applies it to every file it creates later) and
narrows files an earlier version left open. Key and secret files are created 0600 where
they are written (`local_secrets`, `temporal.client`); PostgreSQL keeps its own data 0700.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

OWNER_ONLY_UMASK = 0o077


@contextlib.contextmanager
def owner_only_umask() -> Iterator[None]:
    """Processes started inside the block create files only their owner can read."""
    previous = os.umask(OWNER_ONLY_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def restrict_files(folder: Path, pattern: str) -> list[Path]:
    """Make the files in `folder` matching `pattern` owner-only; returns those narrowed."""
    narrowed = []
    for path in sorted(folder.glob(pattern)):
        if not path.is_file() or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
            narrowed.append(path)
    return narrowed


def write_owner_only(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by its owner alone, whole or not at all.

    The folders made for it are 0700 and the file 0600 from the moment it exists (never
    widened by the umask, never briefly open to others); a temporary file is renamed over
    `path`, so a reader sees the old file or the new one, and a retried writer replaces its
    own earlier file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
