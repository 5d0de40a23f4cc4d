"""No module imports a test module or conftest: shared helpers live in tests/support/.

A helper imported from a test module makes that module's tests run wherever the helper is
used (pytest collects imported test functions) and ties two test modules' changes together;
one imported from conftest imports conftest a second time under another name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tests", "scripts", "bench", "faults")
TEST_MODULE = re.compile(r"tests\.(test_\w+|conftest)")


def imports_of_test_modules(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            modules = [node.module]
            if node.module == "tests":
                modules = [f"tests.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {module}"
                  for module in modules if TEST_MODULE.fullmatch(module)]
    return found


def test_no_module_imports_a_test_module_or_conftest() -> None:
    offending = [line for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
                 for line in imports_of_test_modules(path)]
    assert offending == [], "move the helper to tests/support/ and import it from there"
