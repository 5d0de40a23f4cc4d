"""Figures with their baselines: the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Better = Literal["higher", "lower"]


@dataclass
class Figure:
    """One measured figure of the service next to the same figure for the baseline."""

    scenario: str
    metric: str
    unit: str
    value: float | None
    baseline: float | None
    baseline_name: str
    better: Better = "higher"
    target: str = ""
    """e.g. `ratio >= 0.8`, `ratio <= 1.25`, `value <= 300`; empty when informative only."""
    note: str = ""
    extra: dict[str, float | int | str | None] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without a target or a measurement."""
        if not self.target:
            return None
        subject, op, bound_text = self.target.split()
        measured = self.ratio if subject == "ratio" else self.value
        if measured is None:
            return None
        bound = float(bound_text)
        return measured >= bound if op == ">=" else measured <= bound


def machine() -> dict[str, str | int | float]:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process, from /proc (Linux)."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table (reads fine in a terminal too)."""
    header = ["scenario", "metric", "service", "baseline", "ratio", "target", "met"]
    rows = [header, ["---"] * len(header)]
    for figure in figures:
        ratio = figure.ratio
        met = {True: "yes", False: "**no**", None: "-"}[figure.met]
        rows.append([
            figure.scenario,
            f"{figure.metric} ({figure.unit})",
            _number(figure.value),
            f"{_number(figure.baseline)} {figure.baseline_name}".strip(),
            "-" if ratio is None else f"{ratio:.2f}",
            figure.target or "-",
            met,
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = ["-" * width for width in widths] if row[0] == "---" else row
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                     + " |")
    return "\n".join(lines)


def notes(figures: list[Figure]) -> str:
    return "\n".join(f"- {f.scenario} / {f.metric}: {f.note}" for f in figures if f.note)


def write_json(path: Path, *, size: str, figures: list[Figure], seconds: float,
               parameters: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "size": size,
        "finished_at": datetime.now(UTC).isoformat(),
        "duration_seconds": round(seconds, 1),
        "machine": machine(),
        "parameters": parameters,
        "figures": [
            {**asdict(figure), "ratio": figure.ratio, "met": figure.met} for figure in figures
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
