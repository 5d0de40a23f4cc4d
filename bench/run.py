"""Run every scenario on a fresh embedded stack; print the table, write the JSON.

    .venv/bin/python -m bench --size smoke     # about a minute: keeps the benchmark working
    .venv/bin/python -m bench --size full      # the figures in docs/performance.md

Only ratios mean anything on a shared machine: each figure's baseline is measured in the
same run, on the same servers, just before or after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.bursts import bursts
from bench.idle import idle
from bench.report import Figure, machine, notes, table, write_json
from bench.stack import Stack, embedded_stack
from bench.workers import several_workers

Scenario = Callable[[Stack, scenarios.Size, scenarios.Shared], Awaitable[list[Figure]]]
SCENARIOS: dict[str, Scenario] = {
    "attended": scenarios.attended,
    "ladder": scenarios.ladder,
    "replay": scenarios.replay,
    "burst": scenarios.burst,
    "bursts": bursts,
    "audit": scenarios.audit_append,
    "intake": scenarios.intake_and_memory,
    "workers": several_workers,
    "idle": idle,
}
OPT_IN = {"workers"}
"""Run only when named in --only: it starts worker processes eight times over."""
"""In running order: replay uses the histories of `attended` and `ladder`, `burst` and
`bursts` (two worker processes, the large K) the throughput `attended` measured."""
ORDER = ["1 attended", "2 history", "3 burst", "4 audit append", "5 replay",
         "6 worker memory", "7 day intake", "8 workers", "9 idle"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(scenarios.SIZES), default="smoke")
    parser.add_argument("--json", type=Path, help="where to write the figures "
                        "(default .data/bench/<size>.json)")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS),
                        help="run only these scenarios (default: all)")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=N",
                        help="override a size's field, e.g. --set burst=400 (for profiling)")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    size = scenarios.SIZES[args.size]
    for override in args.set:
        name, _, value = override.partition("=")
        changes: dict[str, Any] = {name: int(value)}
        size = dataclasses.replace(size, **changes)
    path: Path = args.json or Path(".data") / "bench" / f"{size.name}.json"
    logging.basicConfig(level=logging.WARNING)
    began = time.perf_counter()
    figures: list[Figure] = []
    shared = scenarios.Shared()
    print(f"benchmark, size {size.name}: starting the embedded stack ...", flush=True)
    async with embedded_stack() as stack:
        for name, scenario in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            if name in OPT_IN and not args.only:
                continue
            if name == "replay" and not shared.histories:
                continue
            step = time.perf_counter()
            print(f"  {name} ...", end="", flush=True)
            figures += await scenario(stack, size, shared)
            print(f" {time.perf_counter() - step:.1f} s", flush=True)
    figures.sort(key=lambda f: ORDER.index(f.scenario))
    seconds = time.perf_counter() - began
    write_json(path, size=size.name, figures=figures, seconds=seconds,
               parameters=dict(vars(size)))
    about = machine()
    print(f"\n{table(figures)}\n\n{notes(figures)}\n")
    print(f"{about['cpu']}, {about['cores']} cores, {about['memory_gb']} GB, "
          f"load {about['load_average_1m']}; {seconds:.0f} s; figures in {path}")
    return 0
