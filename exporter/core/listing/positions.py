"""Where listing stands: the newest run seen, the pending walk, what was listed in full."""

from __future__ import annotations

import json

from exporter.core.listing.walk import Walk


class Positions:
    """Where listing stands, persisted as checkpoint meta (the pending walk under the
    key `scan`, its name since 0.1.0)."""

    def __init__(self, lookback_ns: int) -> None:
        self._lookback_ns = lookback_ns
        self.hwm_ns: int | None = None
        """Creation time of the newest run seen."""
        self.pending_walk: Walk | None = None
        """The walk still under way (persisted until it reaches its floor)."""
        # Every run created before this had been listed (start of the last walk that
        # reached its floor); None before one did, or in a state file of 0.1.0.
        self.listed_until_ns: int | None = None
        self._late_mark: int | None = None

    def begin_cycle(self) -> None:
        """Mark where this cycle starts: a new run older than what earlier cycles saw
        from the head is a late commit (only known when no walk is still pending)."""
        self._late_mark = self.hwm_ns if self.pending_walk is None else None

    def start_walk(self, walk: Walk) -> None:
        """`walk` is under way: persisted as pending until it reaches its floor."""
        self.pending_walk = walk

    def drop_walk(self) -> None:
        """Give the walk up; the next cycle starts a new one from the head."""
        self.pending_walk = None

    def walk_done(self, started_ns: int) -> None:
        """The walk reached its floor: every run created before `started_ns` was listed."""
        self.pending_walk = None
        self.listed_until_ns = started_ns

    def new_walk(self, now: int, *, first_start: bool, backfill_ns: int | None) -> Walk:
        """The walk a cycle starts when none is pending: down to the dedupe floor; on a
        fresh state's first start, a backfill (counted) or the history (not counted)."""
        lookback = self._lookback_ns
        if not first_start or self.hwm_ns is not None:
            floor = self.dedupe_floor_ns() if self.hwm_ns is not None else None
            if floor is None and self.listed_until_ns is not None:
                # Cycles ran but saw no run yet: whatever came since is new.
                floor = self.listed_until_ns - lookback
            return Walk(floor_ns=floor, count=True, first_lookback_ns=lookback)
        if backfill_ns is not None:
            return Walk(
                floor_ns=now - backfill_ns, count=True, first=True, first_lookback_ns=lookback
            )
        return Walk(floor_ns=None, count=False, first=True, first_lookback_ns=lookback)

    def listed_until_or_newest_ns(self) -> int | None:
        """Every run created before this was listed, as far as the state knows (files of
        0.1.0 say only the newest run seen)."""
        return self.listed_until_ns if self.listed_until_ns is not None else self.hwm_ns

    def is_late(self, created: int) -> bool:
        """Whether a run first seen now was created before what earlier cycles saw."""
        return self._late_mark is not None and created < self._late_mark

    def saw_created(self, created: int) -> None:
        """A run created at `created` was adopted: move the high-water mark."""
        if self.hwm_ns is None or created > self.hwm_ns:
            self.hwm_ns = created

    def dedupe_floor_ns(self) -> int:
        """Runs created before this are outside the window walks re-read."""
        if self.hwm_ns is None:
            return 0
        return self.hwm_ns - self._lookback_ns

    def to_meta(self) -> dict[str, str]:
        """The positions as checkpoint meta."""
        meta = {"hwm_ns": str(self.hwm_ns)} if self.hwm_ns is not None else {}
        meta["scan"] = json.dumps(
            self.pending_walk.to_json() if self.pending_walk is not None else None
        )
        if self.listed_until_ns is not None:
            meta["listed_until_ns"] = str(self.listed_until_ns)
        return meta

    def load(self, meta: dict[str, str]) -> None:
        """Restore the positions from checkpoint meta."""
        if "hwm_ns" in meta:
            self.hwm_ns = int(meta["hwm_ns"])
        walk = json.loads(meta.get("scan", "null"))
        self.pending_walk = Walk.from_json(walk) if walk else None
        if "listed_until_ns" in meta:
            self.listed_until_ns = int(meta["listed_until_ns"])
