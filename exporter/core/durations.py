"""Durations as operators write them: 90s, 5m, 1h30m, 7d."""

from __future__ import annotations

import re
from typing import Any, Final

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> Any:
    """'90s', '5m', '1h30m', '7d' or a plain number of seconds -> seconds (float)."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration like 30s, 5m, 1h30m or 7d")
    return sum(float(n) * _UNITS[u] for n, u in parts)


_SHOWN_UNITS: Final = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def format_duration(seconds: float) -> str:
    """Seconds as an operator writes them: 15 -> '15s', 300 -> '5m', 604800 -> '7d'."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts = []
    left = seconds
    for unit, size in _SHOWN_UNITS:
        count = int(left // size) if unit != "s" else left
        if count:
            parts.append(f"{count:g}{unit}")
            left -= count * size
    return "".join(parts)
