"""A clean demo day verifies and replays clean (issue 22).

`demo.py --exit` plays the demo day and stops; then, with the dev server brought back on
the same database file (as `dev.py up` would), `starter.py audit verify --all` and `audit
replay --all` exit 0: the notices' trails are verified and their workflows (`notice-<key>`)
replayed under their own ids, counted apart from the sessions.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from demo import embedded_temporal
from missed_session.config import Settings
from tests.support.dev_signals import alive, naming, stack_env
from tests.support.dev_up import data_dir

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e
__all__ = ["data_dir"]  # the fixture, imported


async def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """`python argv` from the project root, in a thread (the event loop runs meanwhile)."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=400, check=False)


async def test_after_the_demo_day_audit_verify_and_replay_all_exit_0(data_dir: Path) -> None:
    env, _ = stack_env(data_dir)
    env["MSR_METRICS_PORT"] = "0"
    demo = await run(env, "demo.py", "--exit")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "All 6 sessions closed; the stack stops." in demo.stdout, demo.stdout
    after = demo.stdout.split("All 6 sessions closed")[1]
    assert "http://" not in after, after  # the stack is gone: no address is printed
    assert "Traceback" not in demo.stderr, demo.stderr
    assert "Warning" not in demo.stdout + demo.stderr

    verified = await run(env, "starter.py", "audit", "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    summary = verified.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"verified 6 sessions: 6 intact, 0 broken; \d+ notices: \d+ intact, "
                        r"0 broken", summary), verified.stdout

    settings = Settings(
        data_dir=data_dir, temporal_address=env["MSR_TEMPORAL_ADDRESS"],
        ui_port=int(env["MSR_UI_PORT"]),
        dev_server_http_port=int(env["MSR_DEV_SERVER_HTTP_PORT"]),
        dev_server_metrics_port=int(env["MSR_DEV_SERVER_METRICS_PORT"]))
    async with embedded_temporal(settings):  # the demo's history, on its database file
        replayed = await run(env, "starter.py", "audit", "replay", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    summary = replayed.stdout.strip().splitlines()[-1]
    notices = re.fullmatch(r"replayed 6 sessions: 6 OK, 0 mismatched; (\d+) notices: (\d+) OK, "
                           r"0 mismatched", summary)
    assert notices is not None, replayed.stdout
    assert int(notices[1]) >= 5, summary  # every no-show alert and the blocked task
    assert "MISMATCH" not in replayed.stdout
    assert not [pid for pid in naming(data_dir) if alive(pid) and pid != os.getpid()]
