"""What the exporter knows about runs, and the rules that count each finished run once.

Pure state machine, no I/O and no clock of its own: every method takes `now` (epoch ns
of the exporter's clock). The poller feeds it observations; the checkpoint persists the
records and aggregates it marks dirty.

Life of a run record:

    (unseen) ──open──────────► OPEN ──terminal──► SETTLING ──grace over──► DONE (counted)
    (unseen) ──terminal──────► SETTLING                        404 ──► counted at once
    (unseen) ──terminal, first start──► BASELINE (history, never counted)
    OPEN ──404──► removed, letta_runs_deleted_total
    OPEN ──older than forget horizon / over capacity──► removed, counted as dropped

DONE and BASELINE records are kept only while a later scan could list the run again
(created_at within the lookback window), which is what makes the re-scan idempotent.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from exporter import catalogue as m
from exporter.aggregates import Aggregates
from exporter.labels import CappedLabel, enum_value
from exporter.letta.models import Run, to_epoch_ns
from exporter.walk import Walk

_NS: Final = 1_000_000_000
# A run that completed this long ago has had every late write (duration, callback) land.
SETTLED_AGE_NS: Final = 600 * _NS


class Phase(StrEnum):
    OPEN = "open"
    SETTLING = "settling"
    DONE = "done"
    BASELINE = "baseline"


@dataclass(slots=True)
class RunRecord:
    """The exporter's view of one run. Times are epoch ns."""

    id: str
    agent_id: str
    created_ns: int
    phase: Phase
    status: str
    stop_reason: str | None = None
    completed_ns: int | None = None
    duration_ns: int | None = None
    ttft_ns: int | None = None
    callback: bool = False
    callback_code: int | None = None
    callback_error: bool = False
    terminal_seen_ns: int | None = None
    last_seen_ns: int = 0
    next_refresh_ns: int = 0

    def to_row(self) -> list[Any]:
        """Compact persisted form (field order is part of the checkpoint schema)."""
        return [
            self.agent_id,
            self.phase.value,
            self.status,
            self.stop_reason,
            self.completed_ns,
            self.duration_ns,
            self.ttft_ns,
            int(self.callback),
            self.callback_code,
            int(self.callback_error),
            self.terminal_seen_ns,
            self.last_seen_ns,
        ]

    @classmethod
    def from_row(cls, run_id: str, created_ns: int, row: list[Any]) -> RunRecord:
        """Inverse of to_row."""
        return cls(
            id=run_id,
            created_ns=created_ns,
            agent_id=row[0],
            phase=Phase(row[1]),
            status=row[2],
            stop_reason=row[3],
            completed_ns=row[4],
            duration_ns=row[5],
            ttft_ns=row[6],
            callback=bool(row[7]),
            callback_code=row[8],
            callback_error=bool(row[9]),
            terminal_seen_ns=row[10],
            last_seen_ns=row[11],
        )

    def absorb(self, run: Run) -> None:
        """Take the newer observation's fields; a null never erases a known duration."""
        self.status = run.status
        self.stop_reason = run.stop_reason
        if run.completed_at is not None:
            self.completed_ns = to_epoch_ns(run.completed_at)
        if run.total_duration_ns is not None:
            self.duration_ns = run.total_duration_ns
        if run.ttft_ns is not None:
            self.ttft_ns = run.ttft_ns
        self.callback = run.callback_url is not None
        if run.callback_status_code is not None:
            self.callback_code = run.callback_status_code
        if run.callback_error:
            self.callback_error = True

    def fingerprint(self) -> tuple[Any, ...]:
        """The fields whose change is worth a checkpoint write."""
        return (
            self.phase,
            self.status,
            self.stop_reason,
            self.completed_ns,
            self.duration_ns,
            self.ttft_ns,
            self.callback,
            self.callback_code,
            self.callback_error,
        )

    @property
    def callback_recorded(self) -> bool:
        return self.callback_code is not None or self.callback_error


@dataclass(frozen=True, slots=True)
class TrackerOptions:
    """Timing and bounds, all in nanoseconds or counts."""

    lookback_ns: int = 300 * _NS
    grace_ns: int = 5 * _NS
    callback_wait_ns: int = 30 * _NS
    stale_after_ns: int = 3600 * _NS
    stale_refresh_ns: int = 300 * _NS
    forget_after_ns: int = 7 * 86400 * _NS
    max_open_runs: int = 100_000


@dataclass(frozen=True, slots=True)
class OpenRunView:
    """One open run as the gauges see it."""

    agent: str
    status: str
    created_ns: int
    stale: bool


class Tracker:
    """Holds run records, the scan position and the aggregates; applies the counting rules."""

    def __init__(
        self,
        options: TrackerOptions,
        aggregates: Aggregates,
        agent_label: CappedLabel,
        *,
        agent_allowed: Callable[[str], bool] = lambda agent_id: True,
    ) -> None:
        self.options = options
        self.aggregates = aggregates
        self.agent_label = agent_label
        self._allowed = agent_allowed
        self.records: dict[str, RunRecord] = {}
        self.hwm_ns: int | None = None
        self.scan: Walk | None = None
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._late_mark: int | None = None

    def begin_cycle(self) -> None:
        """Mark where this cycle starts: a new run older than what earlier cycles saw
        from the head is a late commit (only known when no walk is still pending)."""
        self._late_mark = self.hwm_ns if self.scan is None else None

    # ---- observations -------------------------------------------------------------

    def observe(
        self,
        run: Run,
        now: int,
        *,
        count: bool = True,
        follow_old: bool = False,
        floor: int | None = None,
    ) -> None:
        """Apply one observation of a run from any endpoint.

        `count=False` marks terminal runs never seen before as history (first start).
        `follow_old` admits unknown open runs below the floor (active listing, GET).
        `floor` is the creation time below which an unknown run may be one counted and
        forgotten long ago, so it is ignored; it defaults to the dedupe floor.
        """
        if not self._allowed(run.agent_id):
            return
        record = self.records.get(run.id)
        if record is None:
            if floor is None:
                floor = self.dedupe_floor_ns()
            self._first_sight(run, now, count=count, follow_old=follow_old, floor=floor)
            return
        record.last_seen_ns = now
        if record.phase is Phase.BASELINE:
            return
        if record.phase is Phase.DONE:
            if (run.status, run.stop_reason) != (record.status, record.stop_reason):
                # Counted already; say so rather than count the run twice.
                self.aggregates.inc(m.CHANGED_AFTER_COUNT)
                record.status, record.stop_reason = run.status, run.stop_reason
                self._dirty.add(run.id)
            return
        before = record.fingerprint()
        record.absorb(run)
        if record.phase is Phase.OPEN and run.is_terminal:
            record.phase = Phase.SETTLING
            record.terminal_seen_ns = now
        if record.fingerprint() != before:
            # last_seen alone is not persisted eagerly: rewriting every open run each
            # cycle would cost a write per run per cycle for no gain after a restart.
            self._dirty.add(run.id)

    def _first_sight(
        self, run: Run, now: int, *, count: bool, follow_old: bool, floor: int
    ) -> None:
        created = run.created_ns
        terminal = run.is_terminal
        if created < floor and not (follow_old and not terminal):
            return  # at or past the window: could be a run counted and pruned long ago
        if not terminal and now - created > self.options.forget_after_ns:
            return
        if self._late_mark is not None and created < self._late_mark:
            self.aggregates.inc(m.LATE_RUNS)
        if self.hwm_ns is None or created > self.hwm_ns:
            self.hwm_ns = created
        if terminal and not count:
            phase = Phase.BASELINE
        elif terminal:
            phase = Phase.SETTLING
        else:
            phase = Phase.OPEN
        record = RunRecord(
            id=run.id,
            agent_id=run.agent_id,
            created_ns=created,
            phase=phase,
            status=run.status,
            terminal_seen_ns=now if terminal else None,
            last_seen_ns=now,
        )
        record.absorb(run)
        self.records[run.id] = record
        self._dirty.add(run.id)
        if phase is Phase.SETTLING and self._settled(record, now):
            self._count(record)

    def observe_backfill(self, run: Run, now: int, created: int | None = None) -> None:
        """A run from a walk region no scan has visited: new by construction, no dedupe.

        `created` is the run's created_ns when the caller has it already (hot path).
        """
        if not self._allowed(run.agent_id) or run.id in self.records:
            self.observe(run, now)
            return
        if created is None:
            created = run.created_ns
        if self.hwm_ns is None or created > self.hwm_ns:
            self.hwm_ns = created
        terminal = run.is_terminal
        if terminal and run.completed_at is not None and created < self.dedupe_floor_ns():
            duration = run.total_duration_ns
            # created + run_ns is when it ended: cheaper than converting completed_at.
            completed = created + duration if duration is not None else None
            if completed is None or now - completed <= SETTLED_AGE_NS:
                completed = to_epoch_ns(run.completed_at)
            if now - completed > SETTLED_AGE_NS:
                # Old history (the bulk of a backfill): count it without building a record,
                # since no later scan can list it again.
                self._count_values(
                    run.agent_id,
                    run.status,
                    run.stop_reason,
                    duration / _NS if duration is not None else (completed - created) / _NS,
                    run.ttft_ns,
                    _callback_result(
                        run.callback_url is not None,
                        run.callback_status_code,
                        bool(run.callback_error),
                    ),
                )
                return
        if not terminal and now - created > self.options.forget_after_ns:
            return
        record = RunRecord(
            id=run.id,
            agent_id=run.agent_id,
            created_ns=created,
            phase=Phase.SETTLING if terminal else Phase.OPEN,
            status=run.status,
            terminal_seen_ns=now if terminal else None,
            last_seen_ns=now,
        )
        record.absorb(run)
        if terminal and self._settled(record, now):
            self._count(record, keep=created >= self.dedupe_floor_ns())
            return
        self.records[run.id] = record
        self._dirty.add(run.id)

    def vanished(self, run_id: str, now: int) -> None:
        """A followed run answered 404: deleted (or its agent was)."""
        record = self.records.get(run_id)
        if record is None:
            return
        if record.phase is Phase.SETTLING:
            self._count(record)  # it did finish; count what we saw rather than lose it
        elif record.phase is Phase.OPEN:
            self.aggregates.inc(m.RUNS_DELETED, (self.agent_label(record.agent_id),))
        self._drop(run_id)

    # ---- what the poller should fetch -------------------------------------------

    def unseen_open(self, since: int, now: int) -> list[RunRecord]:
        """Open runs not observed since `since` whose refresh is due (stale ones less often)."""
        return [
            r
            for r in self.records.values()
            if r.phase is Phase.OPEN and r.last_seen_ns < since and r.next_refresh_ns <= now
        ]

    def settling_needing_refresh(self, now: int) -> list[RunRecord]:
        """Finished runs past their grace period without an observation made after it."""
        return [
            r
            for r in self.records.values()
            if r.phase is Phase.SETTLING
            and r.terminal_seen_ns is not None
            and now - r.terminal_seen_ns >= self.options.grace_ns
            and r.last_seen_ns < r.terminal_seen_ns + self.options.grace_ns
        ]

    # ---- end of cycle -----------------------------------------------------------

    def finalize(self, now: int) -> int:
        """Count every settling run whose late fields have had time to land."""
        due = [
            r for r in self.records.values() if r.phase is Phase.SETTLING and self._settled(r, now)
        ]
        for record in due:
            self._count(record)
        return len(due)

    def housekeeping(self, now: int) -> None:
        """Prune records no scan can list again; expire and cap the open set."""
        floor = self.dedupe_floor_ns()
        keep_below = self.scan.pos[0] if self.scan is not None and self.scan.pos else None
        opts = self.options
        for record in list(self.records.values()):
            if record.phase in (Phase.DONE, Phase.BASELINE):
                # Records below a pending scan's position may be listed by it again.
                if record.created_ns < floor and (
                    keep_below is None or record.created_ns >= keep_below
                ):
                    self._drop(record.id)
            elif record.phase is Phase.OPEN:
                age = now - record.created_ns
                if age > opts.forget_after_ns:
                    self.aggregates.inc(m.OPEN_RUNS_DROPPED, ("expired",))
                    self._drop(record.id)
                elif age > opts.stale_after_ns and record.next_refresh_ns <= record.last_seen_ns:
                    record.next_refresh_ns = record.last_seen_ns + opts.stale_refresh_ns
        open_runs = [r for r in self.records.values() if r.phase is Phase.OPEN]
        excess = len(open_runs) - opts.max_open_runs
        if excess > 0:
            for record in heapq.nsmallest(excess, open_runs, key=lambda r: r.created_ns):
                self.aggregates.inc(m.OPEN_RUNS_DROPPED, ("capacity",))
                self._drop(record.id)

    def dedupe_floor_ns(self) -> int:
        """Runs created before this are outside the window scans re-read."""
        if self.hwm_ns is None:
            return 0
        return self.hwm_ns - self.options.lookback_ns

    # ---- views ------------------------------------------------------------------

    def open_runs(self, now: int) -> Iterator[OpenRunView]:
        """Open runs with the labels the gauges use."""
        stale_after = self.options.stale_after_ns
        for r in self.records.values():
            if r.phase is Phase.OPEN:
                yield OpenRunView(
                    self.agent_label(r.agent_id, count_overflow=False),
                    enum_value(r.status),
                    r.created_ns,
                    now - r.created_ns > stale_after,
                )

    def followed_count(self) -> int:
        """Runs being followed: open or settling."""
        return sum(1 for r in self.records.values() if r.phase in (Phase.OPEN, Phase.SETTLING))

    def phase_counts(self) -> Counter[Phase]:
        """Records by phase (for tests and debugging)."""
        return Counter(r.phase for r in self.records.values())

    def take_changes(self) -> tuple[list[RunRecord], list[str]]:
        """Records changed and ids removed since the last call."""
        changed = [self.records[i] for i in self._dirty if i in self.records]
        removed = list(self._removed)
        self._dirty.clear()
        self._removed.clear()
        return changed, removed

    def load(self, records: list[RunRecord], meta: dict[str, str]) -> None:
        """Restore records and positions from the checkpoint."""
        for record in records:
            self.records[record.id] = record
        if "hwm_ns" in meta:
            self.hwm_ns = int(meta["hwm_ns"])
        scan = json.loads(meta.get("scan", "null"))
        self.scan = Walk.from_json(scan) if scan else None

    def scan_json(self) -> str:
        """The pending scan, persisted as meta."""
        return json.dumps(self.scan.to_json() if self.scan is not None else None)

    # ---- internals --------------------------------------------------------------

    def _settled(self, record: RunRecord, now: int) -> bool:
        if record.completed_ns is not None and now - record.completed_ns > SETTLED_AGE_NS:
            return True
        seen = record.terminal_seen_ns
        if seen is None or now - seen < self.options.grace_ns:
            return False
        if record.last_seen_ns < seen + self.options.grace_ns:
            return False  # no observation since the grace period ended: refresh first
        return not (
            record.callback
            and not record.callback_recorded
            and now - seen < self.options.callback_wait_ns
        )

    def _count(self, record: RunRecord, *, keep: bool = True) -> None:
        self._count_values(
            record.agent_id,
            record.status,
            record.stop_reason,
            run_duration_seconds(record),
            record.ttft_ns,
            _callback_result(record.callback, record.callback_code, record.callback_error),
        )
        record.phase = Phase.DONE
        if keep:
            self.records[record.id] = record
            self._dirty.add(record.id)
        else:
            self._drop(record.id)

    def _count_values(
        self,
        agent_id: str,
        status: str,
        stop_reason: str | None,
        duration_s: float | None,
        ttft_ns: int | None,
        callback: str | None,
    ) -> None:
        """The one place a finished run turns into counter and histogram samples."""
        agg = self.aggregates
        agent = self.agent_label(agent_id)
        status_label = enum_value(status)
        agg.inc(m.RUNS_FINISHED, (agent, status_label, enum_value(stop_reason)))
        if duration_s is not None and duration_s >= 0:
            agg.observe(m.RUN_DURATION, (agent, status_label), duration_s)
        if ttft_ns is not None and ttft_ns >= 0:
            agg.observe(m.RUN_TTFT, (agent,), ttft_ns / _NS)
        if callback is not None:
            agg.inc(m.RUN_CALLBACKS, (agent, callback))

    def _drop(self, run_id: str) -> None:
        if self.records.pop(run_id, None) is not None:
            self._removed.add(run_id)
        self._dirty.discard(run_id)


def run_duration_seconds(record: RunRecord) -> float | None:
    """Letta's own run_ns when the list gave it, else completed_at - created_at."""
    if record.duration_ns is not None and record.duration_ns >= 0:
        return record.duration_ns / _NS
    if record.completed_ns is not None and record.completed_ns >= record.created_ns:
        return (record.completed_ns - record.created_ns) / _NS
    return None


def _callback_result(has_callback: bool, code: int | None, error: bool) -> str | None:
    """success (2xx), failure (error or other status), unknown (nothing recorded), or
    None when the run had no callback URL."""
    if not has_callback:
        return None
    if error or (code is not None and code >= 300):
        return "failure"
    if code is not None:
        return "success"
    return "unknown"
