"""A resumable walk down `GET /v1/runs/?order=desc` by cursor that survives Letta's quirks.

Pure logic, no I/O: the pager (`exporter.poll.pager`) sends the request `cursor()` names
and hands the page to `feed()`. What it guards against (letta-runs-api.md §4):

- **Cursor direction**: only `order=desc` is used. Which parameter then means "older
  than X" is judged page by page by the pager (`exporter.core.listing.direction`): `before` on
  0.16.8 (swapped) and on servers where cursors are absolute in time, `after` where they
  are relative to the order.
- **Lost cursor**: a deleted cursor run makes Letta restart the list from the head. The
  first row of such a page is not older than the cursor; the walk then retries with a
  fallback cursor from the same page, and finally walks from the head again, skipping
  rows at or above `pos` (already processed).
- **SQLite servers** compare the cursor at whole seconds, which would skip rows later in
  the cursor's second. The preferred cursor is therefore the last row of a *newer*
  second than the page's tail, so the tail second is read again (duplicates are skipped
  by `pos`). A full page inside one second has no such row: the walk asks for the same
  page with a larger limit instead.
- **No progress**: a page whose oldest row is not older than the previous page's ends the
  walk for this cycle (counted as a stall) instead of looping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from exporter.letta.models import Run
from exporter.units import NS_PER_S

Key = tuple[int, str]
"""The list's sort key: (created_at in epoch ns, run id)."""

_MAX_CURSORS: Final = 4


@dataclass(slots=True)
class PageResult:
    """What one page meant for the walk."""

    fresh: list[Run]
    fresh_created: list[int] = field(default_factory=list)
    """created_ns of each fresh run (computed once here, reused by the tracker)."""
    done: bool = False
    lost_cursor: bool = False
    stalled: bool = False
    retry: bool = False
    widen: bool = False


@dataclass(slots=True)
class Walk:
    """Position of one descending walk; persisted between cycles while unfinished.

    `floor_ns` None means "decide from the first row seen": the newest run's created_at
    minus `first_lookback_ns` (a first start without backfill). `count` False marks
    finished runs found as history; `first` marks the first walk of a fresh state, whose
    whole region no earlier walk has seen.
    """

    floor_ns: int | None
    count: bool = True
    first: bool = False
    first_lookback_ns: int = 0
    cursors: list[tuple[str, Key]] = field(default_factory=list)
    pos: Key | None = None
    head_ns: int | None = None
    pages: int = 0
    runs: int = 0
    # Per-cycle guards, not persisted.
    _last_min: Key | None = None
    _head_restarts: int = 0

    def cursor(self) -> str | None:
        """The `before` value for the next request, or None to start at the head."""
        return self.cursors[0][0] if self.cursors else None

    def new_cycle(self) -> None:
        """Reset the per-cycle loop guards."""
        self._last_min = None
        self._head_restarts = 0

    def drop_cursor(self) -> PageResult:
        """The server refused the cursor (404, as cursor-checking servers answer)."""
        if self.cursors:
            self.cursors.pop(0)
        if self.cursors:
            return PageResult([], lost_cursor=True, retry=True)
        self._head_restarts += 1
        self._last_min = None
        return PageResult([], lost_cursor=True, retry=True, stalled=self._head_restarts > 1)

    def remaining_ns(self) -> int:
        """How much creation time is left to walk (for progress and ETA)."""
        if self.floor_ns is None:
            return 0
        top = self.pos[0] if self.pos is not None else self.head_ns
        return max(0, (top or 0) - self.floor_ns)

    def feed(
        self, runs: list[Run], raw_count: int, limit: int, *, can_widen: bool = False
    ) -> PageResult:
        """Consume one page; returns the rows not processed before and whether to stop.

        `can_widen` says the caller may repeat the request with a larger limit, which
        the walk asks for (`widen`) when a full page lies within one second: no cursor
        taken from it is safe on a SQLite server.
        """
        keys = [(run.created_ns, run.id) for run in runs]
        lost = False
        if self.cursors and keys and keys[0] >= self.cursors[0][1]:
            # The cursor's run is gone and Letta restarted from the head (§4.4).
            lost = True
            self.cursors.pop(0)
            if self.cursors:
                return PageResult([], lost_cursor=True, retry=True)
            self._head_restarts += 1
            self._last_min = None
            if self._head_restarts > 1:
                return PageResult([], lost_cursor=True, stalled=True)
        self.pages += 1
        if keys and self.head_ns is None:
            self.head_ns = keys[0][0]
        if keys and self.floor_ns is None:
            self.floor_ns = keys[0][0] - self.first_lookback_ns
        floor = self.floor_ns if self.floor_ns is not None else 0

        fresh: list[Run] = []
        created: list[int] = []
        reached_floor = False
        for key, run in zip(keys, runs, strict=True):
            if key[0] < floor:
                reached_floor = True
                break
            if self.pos is None or key < self.pos:
                fresh.append(run)
                created.append(key[0])
                self.pos = key
        self.runs += len(fresh)

        no_progress = (
            not lost and bool(keys) and self._last_min is not None and keys[-1] >= self._last_min
        )
        if keys:
            self._last_min = keys[-1] if self._last_min is None else min(self._last_min, keys[-1])
        done = reached_floor or raw_count < limit or not keys
        if no_progress and not done:
            # Every row was read before (a long tail second re-read after a SQLite-safe
            # cursor): a larger page gets past it; at the largest page size, give up.
            if can_widen:
                return PageResult(fresh, created, lost_cursor=lost, widen=True)
            return PageResult(fresh, created, stalled=True, lost_cursor=lost)
        if done:
            return PageResult(fresh, created, done=True, lost_cursor=lost)
        if can_widen and keys[0][0] // NS_PER_S == keys[-1][0] // NS_PER_S:
            return PageResult(
                fresh, created, lost_cursor=lost, widen=True
            )  # same cursor, more rows
        self.cursors = _next_cursors(keys)
        return PageResult(fresh, created, lost_cursor=lost)

    def to_json(self) -> dict[str, Any]:
        """Persistable form."""
        return {
            "floor_ns": self.floor_ns,
            "count": self.count,
            "first": self.first,
            "first_lookback_ns": self.first_lookback_ns,
            "cursors": [[c, list(k)] for c, k in self.cursors],
            "pos": list(self.pos) if self.pos is not None else None,
            "head_ns": self.head_ns,
            "pages": self.pages,
            "runs": self.runs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Walk:
        """Inverse of to_json."""
        pos = data.get("pos")
        return cls(
            floor_ns=data["floor_ns"],
            count=bool(data["count"]),
            first=bool(data.get("first", False)),
            first_lookback_ns=int(data.get("first_lookback_ns", 0)),
            cursors=[(c, (int(k[0]), str(k[1]))) for c, k in data.get("cursors", [])],
            pos=(int(pos[0]), str(pos[1])) if pos is not None else None,
            head_ns=data.get("head_ns"),
            pages=int(data.get("pages", 0)),
            runs=int(data.get("runs", 0)),
        )


def _next_cursors(keys: list[Key]) -> list[tuple[str, Key]]:
    """Cursor candidates, preferred first (see the module docstring on SQLite)."""
    last = len(keys) - 1
    tail_second = keys[last][0] // NS_PER_S
    order: list[int] = []
    for index in range(last, -1, -1):
        if keys[index][0] // NS_PER_S > tail_second:
            order.append(index)
            break
    order.extend(i for i in range(last, max(-1, last - _MAX_CURSORS), -1) if i not in order)
    return [(keys[i][1], keys[i]) for i in order[:_MAX_CURSORS]]
