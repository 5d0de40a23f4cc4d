"""Scenario 3's other rows: the burst on two worker processes, the large burst, and the trail.

Issue 28 asks how the burst's cost grows with the size of the burst (K = 5,000 at the full
size) and what a second worker process buys (two service workers against two bare ones).
Each row has its own baseline, measured in the same run with the same K. The smoke sizes
are tiny: they keep the rows working, not measure them.
"""

from __future__ import annotations

import dataclasses

from bench import scenarios
from bench.report import Figure
from bench.scenarios import Shared, Size
from bench.sessions import percentile
from bench.stack import Stack
from bench.workers import process_burst


async def bursts(stack: Stack, size: Size, shared: Shared) -> list[Figure]:
    """The burst on two worker processes each side, then at `size.burst_large`."""
    figures: list[Figure] = []
    k = size.burst_workers
    service, bare = await process_burst(stack, dataclasses.replace(size, burst=k), shared, 2)
    figures.append(Figure(
        "3 burst", "2 worker processes: first outreach p99", "s",
        percentile(service, 0.99) if service else None,
        percentile(bare, 0.99) if bare else None, "bare, 2 worker processes",
        better="lower",
        note=f"K={k}; separate processes (bench.worker_proc), timed from the histories; "
             f"{len(service)}/{k} reached outreach, bare {len(bare)}/{k}",
    ))
    large = await scenarios.burst(stack, dataclasses.replace(size, burst=size.burst_large),
                                  dataclasses.replace(shared, run=f"{shared.run}-large"))
    for figure in large:
        if figure.metric.startswith("grace expiry -> first outreach"):
            figure.metric = f"K={size.burst_large}: " + figure.metric.removeprefix(
                "grace expiry -> ")
            figure.target = ""
            figures.append(figure)
    return figures
