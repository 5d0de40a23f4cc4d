"""CPU seconds spent by each process of the benchmark's stack: a cost that load does not move.

Wall-clock ratios on a shared 2-core machine swing by a factor of two between runs of the
same code (docs/performance.md); the CPU a scenario makes each process spend does not wait
on the other engineers' work, so CPU per session, service against bare, is the figure that
tells a change on the hot path apart from the noise. Read from /proc: this process (the
benchmark's driver and its in-process workers), the dev server, and PostgreSQL (postmaster,
backends, and backends that exited).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of a process so far (its threads included); `reaped`: and
    of its children that have exited."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_run_ns(pid: int) -> dict[str, int]:
    """Each live thread's CPU time so far, in nanoseconds (schedstat), by thread id.

    The tick counts of `cpu_seconds` (1/100 s) cannot tell an idle bare worker from nothing.
    """
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                found[task.name] = int((task / "schedstat").read_text().split()[0])
    return found


def used_seconds(before: dict[str, int], after: dict[str, int]) -> float:
    """CPU seconds the threads used between the two readings (threads that ended in
    between are left out: an idle runtime's parked threads, a few microseconds)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def postgres_cpu_seconds(directory: Path) -> float:
    """CPU seconds of the embedded PostgreSQL so far: the postmaster, its live children
    (the backends our loops talk to) and those that have exited."""
    postmaster = directory / "postgres" / "postmaster.pid"
    if not postmaster.exists():
        return 0.0
    root = int(postmaster.read_text().split()[0])
    total = cpu_seconds(root, reaped=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(_stat(int(entry.name))[1]) == root:
                    total += cpu_seconds(int(entry.name))
    return total


def _dev_servers(directory: Path) -> list[int]:
    """The dev server's process ids (its command line names the stack's database file)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                if b"start-dev" in command and str(directory).encode() in command:
                    found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Reading:
    """CPU seconds so far, by process."""

    driver: float
    """This process: the benchmark's driver and the workers it hosts."""
    server: float
    """The Temporal dev server."""
    postgres: float
    """PostgreSQL, every backend."""

    @property
    def total(self) -> float:
        return self.driver + self.server + self.postgres

    def __sub__(self, other: Reading) -> Reading:
        return Reading(self.driver - other.driver, self.server - other.server,
                       self.postgres - other.postgres)

    def per(self, count: int) -> dict[str, float]:
        """Milliseconds per item, by process, and in all."""
        return {f"cpu_ms_{name}": 1000 * value / count for name, value in (
            ("driver", self.driver), ("server", self.server),
            ("postgres", self.postgres), ("total", self.total))}


def reading(directory: Path) -> Reading:
    """CPU seconds so far of the stack under `directory` and of this process."""
    times = os.times()
    return Reading(
        driver=times.user + times.system,
        server=sum(cpu_seconds(pid, reaped=True) for pid in _dev_servers(directory)),
        postgres=postgres_cpu_seconds(directory),
    )
