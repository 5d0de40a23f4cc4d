"""Small bar charts drawn on the server as SVG: no script, no CDN, nothing to vendor.

Each chart is an `<svg role="img">` with a title naming what it shows, and its numbers
also go in a table beside it (visually hidden when the chart is shown), so a screen
reader and a printout read the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

COLOURS = ("#0b5cad", "#a4000f", "#1b6e20", "#6b4e00", "#5a2d82", "#00606b")
"""Series colours: each at least 3:1 against white (non-text contrast)."""
WIDTH, HEIGHT = 480, 200
LEFT, BOTTOM, TOP = 30, 34, 12


@dataclass(frozen=True)
class Series:
    """One named row of values, one per label."""

    name: str
    values: Sequence[int]


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], *,
              chart_id: str) -> Markup:
    """Grouped bars: for each label, one bar per series; a legend; a y axis of whole counts."""
    peak = max([1, *(v for s in series for v in s.values)])
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    group = plot_w / max(1, len(labels))
    bar = max(2.0, (group - 6) / max(1, len(series)))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 20 * len(series)}" '
             f'role="img" aria-labelledby="{chart_id}-title" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{chart_id}-title">{escape(title)}</title>']
    for tick in sorted({0, peak // 2, peak}):
        y = TOP + plot_h - plot_h * tick / peak
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#c8c8c8"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for i, label in enumerate(labels):
        x0 = LEFT + i * group + 3
        for j, row in enumerate(series):
            value = row.values[i]
            h = plot_h * value / peak
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar - 1:.1f}" height="{h:.1f}" fill="{COLOURS[j % len(COLOURS)]}">'
                f'<title>{escape(row.name)}, {escape(label)}: {value}</title></rect>')
        parts.append(f'<text x="{x0 + group / 2 - 3:.1f}" y="{TOP + plot_h + 16}" '
                     f'text-anchor="middle">{escape(label)}</text>')
    for j, row in enumerate(series):
        y = HEIGHT + 20 * j
        parts.append(f'<rect x="{LEFT}" y="{y - 10}" width="12" height="12" '
                     f'fill="{COLOURS[j % len(COLOURS)]}"/>')
        parts.append(f'<text x="{LEFT + 18}" y="{y}">{escape(row.name)}</text>')
    parts.append("</svg>")
    table = ['<div class="sr"><table><caption>', str(escape(title)), "</caption><thead><tr>"
             '<th scope="col">Series</th>']
    table += [f'<th scope="col">{escape(label)}</th>' for label in labels]
    table.append("</tr></thead><tbody>")
    for row in series:
        table.append(f'<tr><th scope="row">{escape(row.name)}</th>')
        table += [f"<td>{value}</td>" for value in row.values]
        table.append("</tr>")
    table.append("</tbody></table></div>")
    return Markup("".join(parts) + "".join(table))  # noqa: S704 - every text escaped above
