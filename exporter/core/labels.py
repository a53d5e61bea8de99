"""Bounded label values: sanitising free-form strings and capping per-label cardinality."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Final

OTHER: Final = "__other__"
NONE: Final = "none"
_UNSAFE = re.compile(r"[^a-z0-9_]+")
_MAX_ENUM_LEN: Final = 64
_MAX_ID_LEN: Final = 128


@lru_cache(maxsize=1024)
def enum_value(value: str | None) -> str:
    """A status or stop reason as a label: lowercase `[a-z0-9_]`, at most 64 chars.

    Unknown values from newer servers are kept (sanitised) rather than dropped; a null
    becomes "none" so "no stop reason" is queryable.
    """
    if value is None or value == "":
        return NONE
    cleaned = _UNSAFE.sub("_", value.strip().lower()).strip("_")[:_MAX_ENUM_LEN]
    return cleaned or "unknown"


_MODEL_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+-]+")


@lru_cache(maxsize=4096)
def free_value(value: str | None) -> str:
    """A model or tool name as a label: printable, no spaces, at most 128 chars."""
    if not value:
        return "unknown"
    return _MODEL_UNSAFE.sub("_", value.strip())[:_MAX_ID_LEN] or "unknown"


class CappedLabel:
    """Admits the first `limit` distinct values of one label; later ones become __other__.

    Admitted values are remembered (and persisted by the checkpoint) so a value keeps its
    series across restarts instead of flapping into __other__.
    """

    def __init__(
        self,
        name: str,
        limit: int,
        *,
        admitted: Iterable[str] = (),
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._limit = limit
        self._admitted: dict[str, None] = dict.fromkeys(admitted)
        self._new: list[str] = []
        self._on_overflow = on_overflow or (lambda label: None)

    def __call__(self, value: str, *, count_overflow: bool = True) -> str:
        """The label value to use for `value`, admitting it if there is room.

        Gauges pass `count_overflow=False`: the overflow counter counts runs, not renders.
        """
        value = value[:_MAX_ID_LEN]
        if value in self._admitted:
            return value
        if len(self._admitted) < self._limit:
            self._admitted[value] = None
            self._new.append(value)
            return value
        if count_overflow:
            self._on_overflow(self.name)
        return OTHER

    def values(self) -> list[str]:
        """Every admitted value, first admitted first."""
        return list(self._admitted)

    def take_changes(self) -> list[str]:
        """Values admitted since the last call (for the checkpoint)."""
        new, self._new = self._new, []
        return new


class AgentFilter:
    """Allow/deny regular expressions on agent ids; deny wins."""

    def __init__(self, allow: str | None, deny: str | None) -> None:
        self._allow = re.compile(allow) if allow else None
        self._deny = re.compile(deny) if deny else None

    @lru_cache(maxsize=65536)  # noqa: B019 - one filter per process; ids repeat a lot
    def __call__(self, agent_id: str) -> bool:
        if self._deny is not None and self._deny.fullmatch(agent_id):
            return False
        return self._allow is None or bool(self._allow.fullmatch(agent_id))
