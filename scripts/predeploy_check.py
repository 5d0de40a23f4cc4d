#!/usr/bin/env python3
"""Before deploying new workflow code: does it replay what the running build produced.

    .venv/bin/python scripts/predeploy_check.py                        # this checkout's
    .venv/bin/python scripts/predeploy_check.py --histories-from v1.4  # the deployed build's
    .venv/bin/python scripts/predeploy_check.py --live 200             # running sessions

Each history is replayed against this checkout's `SessionWorkflow` with the worker's own
sandbox runner. The recorded histories (tests/histories/, every branch of the protocol) are
encrypted with the tests' key; `--histories-from REF` reads them as they were at a git ref
(the build in production), which says whether the new code may take over sessions that old
code started. `--live N` fetches up to N running sessions from the configured Temporal
(MSR_* / TEMPORAL_* settings, the production keys) and replays those.

Exit 0: everything replayed. Exit 1: some did not. With Worker Versioning's default,
`pinned` (docs/deployment.md), a failure against the deployed build's histories does not
block the deploy: running sessions stay on their build; it forbids moving them (no
auto-upgrade, no version override) and means the old build must run until they drain.
With `auto_upgrade`, any failure blocks the deploy: guard the change with
`workflow.patched()`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client, WorkflowHistory  # noqa: E402
from temporalio.converter import DataConverter  # noqa: E402
from temporalio.worker import Replayer  # noqa: E402

from missed_session.audit.replay import replay_failure  # noqa: E402
from missed_session.config import load_settings  # noqa: E402
from missed_session.temporal.client import connect  # noqa: E402
from worker import WORKFLOW_RUNNER  # noqa: E402
from workflows.session import SessionWorkflow  # noqa: E402

HISTORIES = Path("tests/histories")
RUNNING = 'WorkflowType="SessionWorkflow" AND ExecutionStatus="Running"'


@dataclass(frozen=True)
class Outcome:
    """What replaying one history gave."""

    workflow_id: str
    failure: str | None


def _workflow_id(name: str) -> str:
    return f"session-hist-{Path(name).stem.replace('_', '-')}"


def _git(*args: str) -> str:
    git = shutil.which("git")
    if git is None:
        msg = "--histories-from needs git"
        raise SystemExit(msg)
    command = [git, "-C", str(ROOT), *args]  # a fixed program, no shell
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout  # noqa: S603


def recorded(ref: str | None) -> list[WorkflowHistory]:
    """The recorded branch histories of this checkout, or as they were at a git ref."""
    if ref is None:
        paths = sorted((ROOT / HISTORIES).glob("*.json"))
        return [WorkflowHistory.from_json(_workflow_id(path.name), path.read_text())
                for path in paths if path.name != "outcomes.json"]
    listing = _git("ls-tree", "--name-only", f"{ref}:{HISTORIES}").split()
    histories = []
    for name in sorted(listing):
        if name.endswith(".json") and name != "outcomes.json":
            text = _git("show", f"{ref}:{HISTORIES}/{name}")
            histories.append(WorkflowHistory.from_json(_workflow_id(name), text))
    return histories


async def running(client: Client, limit: int) -> AsyncIterator[WorkflowHistory]:
    """Histories of up to `limit` running sessions."""
    count = 0
    async for execution in client.list_workflows(RUNNING):
        if count >= limit:
            return
        count += 1
        yield await client.get_workflow_handle(execution.id,
                                               run_id=execution.run_id).fetch_history()


async def replay(histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory],
                 converter: DataConverter) -> list[Outcome]:
    """Replay each history against this checkout's workflow."""
    replayer = Replayer(workflows=[SessionWorkflow], data_converter=converter,
                        workflow_runner=WORKFLOW_RUNNER)
    outcomes = []
    if isinstance(histories, AsyncIterator):
        async for history in histories:
            outcomes.append(Outcome(history.workflow_id, await replay_failure(replayer, history)))
    else:
        for history in histories:
            outcomes.append(Outcome(history.workflow_id, await replay_failure(replayer, history)))
    return outcomes


def report(what: str, outcomes: Sequence[Outcome]) -> bool:
    """Print one line per failure and a summary; True when all replayed."""
    failed = [outcome for outcome in outcomes if outcome.failure is not None]
    for outcome in failed:
        print(f"FAILED {outcome.workflow_id}: {outcome.failure}")
    print(f"{what}: {len(outcomes)} replayed, {len(failed)} failed")
    return not failed


async def run(args: argparse.Namespace) -> bool:
    """Each requested check in turn; True when all passed."""
    from tests.support.servers import TEST_CONVERTER  # noqa: PLC0415 - the recorded histories' key

    ok = True
    where = f"histories at {args.histories_from}" if args.histories_from else "recorded histories"
    ok &= report(where, await replay(recorded(args.histories_from), TEST_CONVERTER))
    if args.live:
        client = await connect(load_settings())
        outcomes = await replay(running(client, args.live), client.data_converter)
        ok &= report(f"running sessions on {client.namespace}", outcomes)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, exit 0 when everything replayed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories-from", metavar="GIT_REF",
                        help="replay the recorded histories as of this ref (the deployed build)")
    parser.add_argument("--live", type=int, default=0, metavar="N",
                        help="also replay up to N running sessions from the configured Temporal")
    ok = asyncio.run(run(parser.parse_args(argv)))
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no runtime teardown at exit (sdk-python issue 300)
