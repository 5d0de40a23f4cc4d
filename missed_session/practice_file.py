"""Reading a practice's protocol file (the validation itself is pure, in the domain)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from missed_session.domain.brake import BrakeSettings
from missed_session.domain.clients import ConsentDefaults
from missed_session.domain.practice import (
    PracticeFileError,
    PracticeProtocols,
    brake_settings,
    parse,
)
from missed_session.domain.roster_file import PracticeRoster, parse_roster


def load_practice_file(path: Path) -> PracticeProtocols:
    """Read and validate the practice file at `path`; errors name the file."""
    return parse(_read(path), str(path))


def load_consent_defaults(path: Path | None) -> ConsentDefaults:
    """The `[consent_defaults]` table of the practice file, or the conservative built-in.

    What a channel with no consent record means for a client in the directory; errors name
    the file and the key.
    """
    if path is None:
        return ConsentDefaults()
    table = _toml(path).get("consent_defaults", {})
    if not isinstance(table, dict):
        raise PracticeFileError(f"{path}: consent_defaults: must be a table")
    try:
        return ConsentDefaults.model_validate(table)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        problem = first["msg"].removeprefix("Value error, ")
        if field:
            problem = problem.removeprefix(f"{field}: ")
        where = f"consent_defaults.{field}: " if field else "consent_defaults."
        raise PracticeFileError(f"{path}: {where}{problem}") from None


def load_brake_settings(path: Path | None) -> BrakeSettings | None:
    """The `[brake]` table of the practice file (the mass no-show brake), or None: off."""
    if path is None:
        return None
    return brake_settings(_toml(path), str(path))


def load_roster_file(path: Path) -> PracticeRoster:
    """Read the practice file's roster and notice rules; errors name the file."""
    return parse_roster(_read(path), str(path))


def _read(path: Path) -> str:
    """The practice file's text; a file that cannot be read is named with why."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        msg = f"{path}: cannot be read ({error.strerror or type(error).__name__})"
        raise PracticeFileError(msg) from None


def _toml(path: Path) -> dict[str, Any]:
    """The practice file's tables, for the loaders that read one table of it."""
    try:
        return tomllib.loads(_read(path))
    except tomllib.TOMLDecodeError as error:
        raise PracticeFileError(f"{path}: not valid TOML: {error}") from None
