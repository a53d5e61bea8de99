"""What a schema-generated model does not know about a document, found by a round trip.

Models generated from a schema (Grafana's foundation SDK, the prometheus-operator CRD
models) decode the keys they have and drop the rest; encoding the decoded model again
and comparing with the original shows every key the schema lacks, and every value it
changed.
"""

from __future__ import annotations

import re
from typing import Any


def lost_in_round_trip(original: Any, encoded: Any, path: str = "") -> list[str]:
    """Paths (`panels[3].options.foo`) of keys or values of `original` missing from `encoded`.

    Keys the model added (its defaults) are not reported; nor are keys whose value is
    null, which the models leave out of what they encode.
    """
    if isinstance(original, dict) and isinstance(encoded, dict):
        lost = []
        for key, value in original.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in encoded:
                if value is not None:
                    lost.append(where)
            else:
                lost += lost_in_round_trip(value, encoded[key], where)
        return lost
    if isinstance(original, list) and isinstance(encoded, list):
        if len(original) != len(encoded):
            return [f"{path}: {len(original)} items became {len(encoded)}"]
        return [
            problem
            for index, (item, out) in enumerate(zip(original, encoded, strict=True))
            for problem in lost_in_round_trip(item, out, f"{path}[{index}]")
        ]
    # 1 and 1.0 are the same JSON number; True and 1 are not the same value.
    same_type = type(original) is type(encoded) or _numbers(original, encoded)
    if original != encoded or not same_type:
        return [f"{path}: {original!r} became {encoded!r}"]
    return []


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def generic(path: str) -> str:
    """`panels[3].options.foo` -> `panels[].options.foo`, to match against an allow-list."""
    return re.sub(r"\[\d+\]", "[]", path.split(":", 1)[0])
