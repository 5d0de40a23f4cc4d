"""docs/operations.md's settings table names every setting, under each name it is read by."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from missed_session.config import Settings

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def test_every_setting_is_in_the_table() -> None:
    table = "\n".join(line for line in OPERATIONS.read_text().splitlines()
                      if line.startswith("| `"))
    missing = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = alias.choices if isinstance(alias, AliasChoices) else [f"MSR_{name.upper()}"]
        missing += [str(choice) for choice in names if f"`{choice}`" not in table]
    assert not missing, f"docs/operations.md lacks {missing}"
