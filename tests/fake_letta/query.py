"""Query parameters read the way FastAPI does, with pydantic's errors (§1.3: 422 with
``detail`` as one string).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tests.fake_letta.responses import RouteError, json_response

# pydantic's lax str -> int: optional sign, ASCII digits with single underscores, and an
# optional all-zero fraction ("1.0" is accepted, "1.5" is not).
_INT_RE: Final = re.compile(r"^[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?$")
_BOOL_TRUE: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_BOOL_FALSE: Final = frozenset({"0", "off", "f", "false", "n", "no"})


def _expected(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


class Query:
    """Reads query parameters the way FastAPI does and collects pydantic-style errors.

    Scalars take the *last* occurrence (Starlette's multidict), lists take all of them.
    Errors are collected in parameter declaration order, like FastAPI does.
    """

    def __init__(self, raw: Mapping[str, list[str]]) -> None:
        self.raw = raw
        self.errors: list[dict[str, Any]] = []

    def get_str(self, name: str) -> str | None:
        values = self.raw.get(name)
        return values[-1] if values else None

    def get_list(self, name: str) -> list[str] | None:
        values = self.raw.get(name)
        return list(values) if values else None

    def get_bool(self, name: str, default: bool | None) -> bool | None:
        value = self.get_str(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _BOOL_TRUE:
            return True
        if lowered in _BOOL_FALSE:
            return False
        self.errors.append(
            {
                "type": "bool_parsing",
                "loc": ("query", name),
                "msg": "Input should be a valid boolean, unable to interpret input",
                "input": value,
            }
        )
        return default

    def get_int(
        self, name: str, default: int, *, ge: int | None = None, le: int | None = None
    ) -> int:
        value = self.get_str(name)
        if value is None:
            return default
        text = value.strip()
        if not _INT_RE.match(text):
            self.errors.append(
                {
                    "type": "int_parsing",
                    "loc": ("query", name),
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": value,
                }
            )
            return default
        number = int(text.split(".", 1)[0].replace("_", ""))
        if ge is not None and number < ge:
            self.errors.append(
                {
                    "type": "greater_than_equal",
                    "loc": ("query", name),
                    "msg": f"Input should be greater than or equal to {ge}",
                    "input": value,
                    "ctx": {"ge": ge},
                }
            )
            return default
        if le is not None and number > le:
            self.errors.append(
                {
                    "type": "less_than_equal",
                    "loc": ("query", name),
                    "msg": f"Input should be less than or equal to {le}",
                    "input": value,
                    "ctx": {"le": le},
                }
            )
            return default
        return number

    def get_choice(
        self, name: str, allowed: Sequence[str], default: str | None, *, enum: bool = False
    ) -> str | None:
        value = self.get_str(name)
        if value is None:
            return default
        if value in allowed:
            return value
        expected = _expected(allowed)
        self.errors.append(
            {
                "type": "enum" if enum else "literal_error",
                "loc": ("query", name),
                "msg": f"Input should be {expected}",
                "input": value,
                "ctx": {"expected": expected},
            }
        )
        return default

    def raise_if_invalid(self) -> None:
        if self.errors:
            # FastAPI's handler in Letta's app.py: detail is str(exc.errors()).
            raise RouteError(json_response(422, {"trace_id": "", "detail": str(self.errors)}))
