#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python 3.11+: `python3 dev.py demo|up|test|lint`.

Creates `.venv` beside this file, installs into it exactly `requirements.lock` (every
dependency and test tool, pinned, hashes required: the same lock CI and the image install)
and then the project itself without dependencies, again whenever pyproject.toml or the lock
changes; then runs the command inside it. Standard library only, because nothing else is
installed when it first runs. After changing pyproject.toml's dependencies, regenerate the
lock (it keeps the versions it has unless told to upgrade):

    .venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
        --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header \
        -o requirements.lock

The command runs as a child in its own process group, and this process passes SIGINT and
SIGTERM on to it and waits: Ctrl-C (which the terminal sends to this process only) or a
SIGTERM to this process stops the stack the child started, in order, and the exit code is
the child's. `MSR_DEV_VENV=<path>` uses a virtual environment you manage instead of
`.venv` (nothing is installed into it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent
OWN_VENV = os.environ.get("MSR_DEV_VENV")
"""A virtual environment the developer manages (tests use the one running them)."""
VENV = Path(OWN_VENV).resolve() if OWN_VENV else ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
FORWARDED = (signal.SIGINT, signal.SIGTERM)
LOCK = "requirements.lock"
"""Every dependency, test tools included, pinned with hashes (the image installs it too)."""
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
    if OWN_VENV:
        if not PYTHON.exists():
            sys.exit(f"MSR_DEV_VENV: no {PYTHON}")
        return
    if not PYTHON.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    inputs = (ROOT / "pyproject.toml").read_bytes() + (ROOT / LOCK).read_bytes()
    digest = hashlib.sha256(inputs).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return
    print("installing dependencies into .venv (first run only) ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--require-hashes", "-r", LOCK], check=True, cwd=ROOT)
    # The project itself, editable; its dependencies are the lock's, already in. Its build's
    # output (setuptools' notes about editable installs) is shown only if the build fails.
    editable = subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], cwd=ROOT, check=False,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if editable.returncode != 0:
        print(editable.stdout, file=sys.stderr)
        raise SystemExit(editable.returncode)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def run(step: list[str]) -> int:
    """Run one step inside the environment, from the project root; its exit code.

    The child gets its own process group, so a Ctrl-C at the terminal reaches this process
    alone and the child hears one SIGINT, forwarded, not two (a second would cut its
    graceful stop short); a second Ctrl-C is forwarded too, and does cut it short.
    """
    child = subprocess.Popen([str(PYTHON), *step], cwd=ROOT, process_group=0)
    return wait_forwarding(child)


def wait_forwarding(child: subprocess.Popen[bytes]) -> int:
    """Wait for `child`, passing SIGINT and SIGTERM on to it; its exit code.

    128 + the signal's number when a signal ended it, as a shell reports it.
    """

    def forward(signum: int, _: FrameType | None) -> None:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - code if code < 0 else code


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
    try:
        raise SystemExit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C while the environment was being set up
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
