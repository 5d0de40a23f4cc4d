"""`python3 dev.py up|demo` stops everything on SIGINT or SIGTERM sent to dev.py itself.

dev.py runs the stack as a child in its own process group and forwards both signals to it
(issue 22: it used to die alone, or print a KeyboardInterrupt traceback, leaving the dev
server, PostgreSQL and every port behind). dev.py is pointed at the virtual environment
running the tests (`MSR_DEV_VENV`), so nothing is installed.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.support.dev_signals import _table, alive, naming, stack_env
from tests.support.dev_up import data_dir, listening

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e
__all__ = ["data_dir"]  # the fixture, imported


def stack_processes(root: int, data_dir: Path) -> set[int]:
    """`root`'s descendants, and every process naming `data_dir` (PostgreSQL daemonises)."""
    table = _table()
    found = {pid for pid, (_, cmdline) in table.items() if str(data_dir) in cmdline}
    found.add(root)
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


async def second_stack_refuses(env: dict[str, str], ports: list[int], data_dir: Path) -> None:
    """Another `dev.py up` on the same ports (or data directory) exits 1 naming the PID."""
    elsewhere = data_dir.with_name(data_dir.name + "-second")
    for data in (data_dir, elsewhere):
        second = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "dev.py"), "up", cwd=ROOT,
            env={**env, "MSR_DATA_DIR": str(data)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(second.communicate(), timeout=60)
        text = out.decode()
        assert second.returncode == 1, text
        [error] = [line for line in text.splitlines() if line.startswith("error: ")]
        assert "PID " in error, text
        held = str(data_dir / "postgres") if data == data_dir else f"port {ports[0]} "
        assert held in error, text
        assert "Traceback" not in text, text
    assert not (elsewhere / "postgres").exists()
    shutil.rmtree(elsewhere, ignore_errors=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_to_dev_py_up_stops_every_process_and_port(
    data_dir: Path, signum: signal.Signals,
) -> None:
    env, ports = stack_env(data_dir)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "dev.py"), "up", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    output: list[str] = []
    try:
        while not any(line.startswith("press Ctrl-C") for line in output):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            assert line, "".join(output)
            output.append(line.decode())
        started = stack_processes(process.pid, data_dir)
        assert len(started) >= 4, started  # dev.py, up.py, the dev server, PostgreSQL
        assert all(listening(port) for port in ports), ports
        if signum is signal.SIGTERM:  # a second stack on the same ports is refused
            await second_stack_refuses(env, ports, data_dir)
        process.send_signal(signum)
        rest, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = "".join(output) + rest.decode()
    assert process.returncode == 0, text
    assert "Traceback" not in text, text
    assert "Warning" not in text, text
    assert text.rstrip().endswith("stopped"), text
    for _ in range(50):  # PostgreSQL's last backends may take a moment after pg_ctl returns
        if not [pid for pid in started if alive(pid)]:
            break
        await asyncio.sleep(0.1)
    assert not [pid for pid in started if alive(pid)], text
    assert not [pid for pid in naming(data_dir) if alive(pid)], text
    assert not [port for port in ports if listening(port)]
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

