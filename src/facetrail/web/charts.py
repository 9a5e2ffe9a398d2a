"""Charts drawn on the server as inline SVG (the pages' Content-Security-Policy lets no script draw them): one error
rate of a demographics report, group by group, with its 95% interval."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

WIDTH, LABEL, VALUE, ROW = 600, 140, 120, 28
"""The chart's width, its group-name and value columns, and one group's row height (SVG units; it scales to fit)."""
BAR, WORST = "#0b5cad", "#cf222e"
"""Bar colours: every group, and the worst group of a large difference."""


def group_rates_chart(difference: dict[str, Any], by_group: dict[str, dict[str, Any]]) -> Markup:
    """A horizontal bar chart of ``difference['rate']`` (``published.differences``) for each group of ``by_group``,
    the 95% bootstrap interval drawn as a line through each bar, the worst group in red when the difference is
    large; described for screen readers by its sentence."""
    rate = difference["rate"]
    rows = [(group, figures[rate]) for group, figures in by_group.items() if (figures.get(rate) or {}).get("rate") is not None]
    top = max([figure["rate"] for _, figure in rows] + [(figure.get("ci95_bootstrap") or [0, 0])[1] or 0 for _, figure in rows]) or 1
    span = WIDTH - LABEL - VALUE
    height = ROW * len(rows) + 8

    def x(value: float) -> float:
        return round(LABEL + span * value / top, 1)

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
             f'aria-label="{escape(difference["name"])} by group. {escape(difference["sentence"])}">']
    for row, (group, figure) in enumerate(rows):
        top_y = 4 + row * ROW
        colour = WORST if difference["large"] and group == difference["worst_group"] else BAR
        parts.append(f'<text x="{LABEL - 8}" y="{top_y + 18}" text-anchor="end" font-size="14">{escape(group)}</text>'
                     f'<rect x="{LABEL}" y="{top_y + 4}" width="{x(figure["rate"]) - LABEL}" height="{ROW - 8}" fill="{colour}"/>')
        interval = figure.get("ci95_bootstrap")
        if interval and None not in interval:
            parts.append(f'<line x1="{x(interval[0])}" x2="{x(interval[1])}" y1="{top_y + ROW / 2}" y2="{top_y + ROW / 2}" '
                         'stroke="#1b1f24" stroke-width="2"/>')
        parts.append(f'<text x="{WIDTH - VALUE + 8}" y="{top_y + 18}" font-size="14">{figure["rate"]:.2%}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
