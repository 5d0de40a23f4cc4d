#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python 3.11+: `python3 dev.py demo|up|test|lint`.

Creates `.venv` beside this file, installs the project with its test tools into it (again
whenever pyproject.toml changes), then runs the command inside it. Standard library only,
because nothing else is installed when it first runs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
COMMANDS = {
    "demo": ["demo.py"],
    "up": ["up.py"],
    "worker": ["worker.py"],
    "starter": ["starter.py"],
    "lint": None,
    "test": None,
}


def ensure_environment() -> None:
    """Create the virtual environment and install the project when it is missing or stale."""
    if sys.version_info < (3, 11):
        sys.exit("Python 3.11 or newer is required")
    if not PYTHON.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return
    print("installing dependencies into .venv (first run only) ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True, cwd=ROOT)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def run(step: list[str]) -> int:
    """Run one step inside the environment, from the project root."""
    return subprocess.run([str(PYTHON), *step], cwd=ROOT, check=False).returncode


def lint() -> int:
    """Ruff and mypy over the whole project: both must be clean."""
    return run(["-m", "ruff", "check", "."]) or run(["-m", "mypy", "."])


def main(argv: list[str]) -> int:
    """Dispatch `demo`, `up`, `test`, `lint`, `worker` or `starter`; arguments pass through."""
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python3 dev.py {{{'|'.join(COMMANDS)}}} [args...]", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_environment()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if command == "lint":
        return lint()
    if command == "test":
        return lint() or run(["-m", "pytest", *rest])
    script = COMMANDS[command]
    assert script is not None
    return run([*script, *rest])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
