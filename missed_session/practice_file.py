"""Reading a practice's protocol file (the validation itself is pure, in the domain)."""

from __future__ import annotations

from pathlib import Path

from missed_session.domain.practice import PracticeFileError, PracticeProtocols, parse
from missed_session.domain.roster_file import PracticeRoster, parse_roster


def load_practice_file(path: Path) -> PracticeProtocols:
    """Read and validate the practice file at `path`; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        msg = f"{path}: cannot be read ({error.strerror or type(error).__name__})"
        raise PracticeFileError(msg) from None
    return parse(text, str(path))


def load_roster_file(path: Path) -> PracticeRoster:
    """Read the practice file's roster and notice rules; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        msg = f"{path}: cannot be read ({error.strerror or type(error).__name__})"
        raise PracticeFileError(msg) from None
    return parse_roster(text, str(path))
