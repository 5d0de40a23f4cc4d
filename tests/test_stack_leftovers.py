"""No leftovers, no silent reuse (issue 22).

A stack never joins what another live stack (or a leftover of one) holds: it refuses with
one line naming the port or data directory and the PID. A short-lived command that had to
start the embedded PostgreSQL (no stack up) stops it before it exits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from missed_session.lifecycle import HeldError, listening_pid, refuse_held
from tests.support.dev_signals import alive, naming
from tests.support.dev_up import data_dir

ROOT = Path(__file__).resolve().parent.parent
__all__ = ["data_dir"]  # the fixture, imported


def test_a_port_held_by_a_live_process_is_refused_naming_it_and_its_pid() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        assert listening_pid(port) == os.getpid()
        with pytest.raises(HeldError) as refused:
            refuse_held({"MSR_UI_PORT": port})
    message = str(refused.value)
    assert f"port {port} (MSR_UI_PORT)" in message
    assert f"PID {os.getpid()}" in message
    assert "\n" not in message
    refuse_held({"MSR_UI_PORT": port})  # free again: nothing to say


def test_a_data_directory_with_a_live_postgresql_is_refused(tmp_path: Path) -> None:
    postgres = tmp_path / "postgres"
    postgres.mkdir()
    (postgres / "postmaster.pid").write_text(f"{os.getpid()}\n{postgres}\n")
    with pytest.raises(HeldError, match=f"PID {os.getpid()}"):
        refuse_held({}, postgres)
    (postgres / "postmaster.pid").write_text("999999999\n")  # a stale file: no such process
    refuse_held({}, postgres)


@pytest.mark.e2e
def test_a_starter_command_stops_the_postgresql_it_started(data_dir: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MSR_")}
    env["MSR_DATA_DIR"] = str(data_dir)
    done = subprocess.run([sys.executable, "starter.py", "kept-texts"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("kept texts: pending 0"), done.stdout
    assert "Warning" not in done.stderr, done.stderr
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not [pid for pid in naming(data_dir) if alive(pid)]
