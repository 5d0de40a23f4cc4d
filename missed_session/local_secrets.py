"""Secrets the embedded stack keeps in files under its data directory, owner-only.

Used where no secret is configured: created once (exclusively, mode 0600, so two processes
starting together agree on one), then read. A file found readable by others is an error,
not a warning: its secret has to be assumed known.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class ExposedSecretError(RuntimeError):
    """A secret file that others can read (or write)."""


def new_secret() -> str:
    """A fresh random secret, URL-safe (it may travel in a URL path)."""
    return secrets.token_urlsafe(32)


def read_or_create(path: Path) -> str:
    """The secret in `path`, created first if the file does not exist."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(new_secret())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        msg = (f"{path} is readable or writable by others (mode {mode:04o}); its secret must "
               f"be assumed known: delete the file (a new secret is made) or chmod 600 it")
        raise ExposedSecretError(msg)
    return path.read_text().strip()
