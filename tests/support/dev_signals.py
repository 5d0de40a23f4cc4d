"""Helpers first written for tests/test_dev_signals.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.dev_up import free_ports


def stack_env(data_dir: Path) -> tuple[dict[str, str], list[int]]:
    """The environment of a stack on free ports under `data_dir`, and those ports."""
    ports = free_ports(8)
    names = ["MSR_UI_PORT", "MSR_DEV_SERVER_HTTP_PORT", "MSR_DEV_SERVER_METRICS_PORT",
             "MSR_CODEC_SERVER_PORT", "MSR_METRICS_PORT", "MSR_API_PORT",
             "MSR_INTAKE_MLLP_PORT"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MSR_")}
    env.update({name: str(port) for name, port in zip(names, ports[1:], strict=True)})
    env.update({"MSR_DATA_DIR": str(data_dir), "MSR_TEMPORAL_ADDRESS": f"127.0.0.1:{ports[0]}",
                "MSR_DEV_VENV": sys.prefix})
    return env, ports


def _stat(pid: int) -> tuple[int, str]:
    """(parent PID, command line) of a live process."""
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return ppid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _table() -> dict[int, tuple[int, str]]:
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = _stat(int(entry.name))
            except (OSError, ValueError):
                continue
    return table


def naming(data_dir: Path) -> set[int]:
    """Every process whose command line names `data_dir` (PostgreSQL, the dev server)."""
    return {pid for pid, (_, cmdline) in _table().items() if str(data_dir) in cmdline}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"

