"""The run records by id, what changed since the last commit, and questions about them."""

from __future__ import annotations

from collections.abc import Iterator, ValuesView

from exporter.core.options import TrackerOptions
from exporter.core.runs.record import Phase, RunRecord


class RunTable:
    """Records by run id; remembers which changed or went for the next commit."""

    def __init__(self, options: TrackerOptions) -> None:
        self._options = options
        self._by_id: dict[str, RunRecord] = {}
        self._dirty: set[str] = set()
        self._removed: set[str] = set()

    def __getitem__(self, run_id: str) -> RunRecord:
        return self._by_id[run_id]

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._by_id

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, run_id: str) -> RunRecord | None:
        """The record of a run, if there is one."""
        return self._by_id.get(run_id)

    def values(self) -> ValuesView[RunRecord]:
        """Every record (a live view: copy it before dropping records)."""
        return self._by_id.values()

    def put(self, record: RunRecord) -> None:
        """Add or replace a record; it is written at the next commit."""
        self._by_id[record.id] = record
        self._dirty.add(record.id)

    def restore(self, records: list[RunRecord]) -> None:
        """Records read back from the checkpoint (nothing to write)."""
        for record in records:
            self._by_id[record.id] = record

    def changed(self, record: RunRecord) -> None:
        """The record changed: write it at the next commit."""
        self._dirty.add(record.id)

    def drop(self, run_id: str) -> None:
        """Forget a run; its row is deleted at the next commit."""
        if self._by_id.pop(run_id, None) is not None:
            self._removed.add(run_id)
        self._dirty.discard(run_id)

    def take_changes(self) -> tuple[list[RunRecord], list[str]]:
        """Records changed and ids removed since the last call."""
        changed = [self._by_id[i] for i in self._dirty if i in self._by_id]
        removed = list(self._removed)
        self._dirty.clear()
        self._removed.clear()
        return changed, removed

    # ---- questions ----------------------------------------------------------------

    def in_phase(self, *phases: Phase) -> list[RunRecord]:
        """Records in any of `phases`."""
        return [r for r in self._by_id.values() if r.phase in phases]

    def open_due_refresh(self, since: int, now: int) -> list[RunRecord]:
        """Open runs not observed since `since` whose refresh is due (stale ones less often)."""
        return [
            r
            for r in self._by_id.values()
            if r.phase is Phase.OPEN and r.last_seen_ns < since and r.next_refresh_ns <= now
        ]

    def settling_due_refresh(self, now: int) -> list[RunRecord]:
        """Finished runs past their grace period without an observation made after it."""
        grace_ns = self._options.grace_ns
        return [
            r
            for r in self._by_id.values()
            if r.phase is Phase.SETTLING
            and r.terminal_seen_ns is not None
            and now - r.terminal_seen_ns >= grace_ns
            and r.last_seen_ns < r.terminal_seen_ns + grace_ns
        ]

    def next_settle_ns(self, now: int) -> int | None:
        """The next moment after `now` when a settling run's wait (grace period, then
        callback wait) ends, so the poller can look again then rather than a whole
        interval later."""
        grace_ns, callback_wait_ns = self._options.grace_ns, self._options.callback_wait_ns
        moments = []
        for r in self._by_id.values():
            if r.phase is not Phase.SETTLING or r.terminal_seen_ns is None:
                continue
            if r.terminal_seen_ns + grace_ns > now:
                moments.append(r.terminal_seen_ns + grace_ns)
            elif (
                r.callback
                and not r.callback_recorded
                and r.terminal_seen_ns + callback_wait_ns > now
            ):
                moments.append(r.terminal_seen_ns + callback_wait_ns)
        return min(moments, default=None)

    def oldest_uncounted_finish_ns(self) -> int | None:
        """When the longest-waiting finished run not yet counted finished, if any."""
        return min(
            (
                r.completed_ns if r.completed_ns is not None else r.terminal_seen_ns or 0
                for r in self._by_id.values()
                if r.phase in (Phase.SETTLING, Phase.ENRICHING)
            ),
            default=None,
        )

    def followed_count(self) -> int:
        """Runs being followed: open or settling."""
        return sum(1 for r in self._by_id.values() if r.phase in (Phase.OPEN, Phase.SETTLING))
