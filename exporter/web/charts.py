"""Small server-rendered SVG charts for the status page: no script, no external asset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

WIDTH: Final = 560
HEIGHT: Final = 150
_LEFT: Final = 34
_BOTTOM: Final = 18
_TOP: Final = 8


@dataclass(frozen=True, slots=True)
class Series:
    """One named series: a colour and a value per slot (None: no data for that slot)."""

    name: str
    colour: str
    values: Sequence[float | None]


def _nice_max(value: float) -> float:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if value <= step:
            return float(step)
    return float(value)


def _frame(title: str, top: float, slots: int, legend: Sequence[Series]) -> list[str]:
    plot_h = HEIGHT - _BOTTOM - _TOP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH}" y2="{_TOP + plot_h}" '
        'stroke="#bbb"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{WIDTH}" y2="{_TOP}" stroke="#eee"/>',
        f'<text x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end" class="axis">{top:g}</text>',
        f'<text x="{_LEFT - 4}" y="{_TOP + plot_h}" text-anchor="end" class="axis">0</text>',
        f'<text x="{_LEFT}" y="{HEIGHT - 4}" class="axis">-{slots} min</text>',
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end" class="axis">now</text>',
    ]
    x = WIDTH - 4.0
    for series in reversed(legend):
        label = escape(series.name)
        parts.append(
            f'<text x="{x}" y="{_TOP + 10}" text-anchor="end" class="legend">{label}</text>'
        )
        x -= 7 * len(series.name) + 4.0
        parts.append(
            f'<rect x="{x - 8}" y="{_TOP + 2}" width="8" height="8" fill="{series.colour}"/>'
        )
        x -= 16
    return parts


def stacked_bars(title: str, series: Sequence[Series]) -> str:
    """Bars per slot (oldest first), the series stacked in order."""
    slots = max((len(s.values) for s in series), default=0)
    totals = [sum(s.values[i] or 0 for s in series) for i in range(slots)]
    top = _nice_max(max(totals, default=0) or 1)
    parts = _frame(title, top, slots, series)
    plot_h = HEIGHT - _BOTTOM - _TOP
    slot_w = (WIDTH - _LEFT) / max(slots, 1)
    for i in range(slots):
        y = float(_TOP + plot_h)
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect x="{_LEFT + i * slot_w + 1:.1f}" y="{y:.1f}" width="{slot_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{s.colour}"><title>{escape(s.name)}: {value:g}</title>'
                "</rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def lines(title: str, series: Sequence[Series], span_s: float, times: Sequence[float]) -> str:
    """A line per series over `span_s` seconds; `times` are the points' ages in seconds."""
    top = _nice_max(max((v or 0 for s in series for v in s.values), default=0) or 1)
    parts = _frame(title, top, int(span_s / 60), series)
    plot_h = HEIGHT - _BOTTOM - _TOP
    for s in series:
        points = [
            f"{WIDTH - (WIDTH - _LEFT) * age / span_s:.1f},"
            f"{_TOP + plot_h - plot_h * value / top:.1f}"
            for age, value in zip(times, s.values, strict=True)
            if value is not None and 0 <= age <= span_s
        ]
        if len(points) == 1:
            points.append(points[0])
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{s.colour}" stroke-width="2" '
                f'points="{" ".join(points)}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)
