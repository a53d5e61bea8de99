"""The record book: what the exporter knows about runs, and the rules that count each
finished run once.

Pure state machine, no I/O and no clock of its own: every method takes `now` (epoch ns
of the exporter's clock). The poller feeds it observations; the checkpoint persists the
records and meta it hands over.

Life of a run record:

    (unseen) ──open──────────► OPEN ──terminal──► SETTLING ──grace over──► DONE (counted)
    (unseen) ──terminal──────► SETTLING                        404 ──► counted at once
    (unseen) ──terminal, first start──► BASELINE (history, never counted)
    OPEN ──404──► removed, letta_runs_deleted_total
    OPEN ──older than forget horizon / over capacity──► removed, counted as dropped

SETTLING runs with enrichment asked for pass through ENRICHING (`exporter.core.
enrichment.queue`) before DONE. DONE and BASELINE records are kept only while a later walk
could list the run again (created_at within the lookback window), which is what makes
reading them again idempotent.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final

from exporter.core.approvals.feed import ApprovalFeed
from exporter.core.book.table import RunTable
from exporter.core.counting.counter import RunCounter, RunSample
from exporter.core.listing.positions import Positions
from exporter.core.options import TrackerOptions
from exporter.core.runs.errors import error_type_from_metadata
from exporter.core.runs.inconsistency import (
    REFUSED_WITHOUT_WAIT,
    STOP_REASON_WHILE_OPEN,
    finished_kinds,
    open_with_stop_reason,
)
from exporter.core.runs.record import (
    Enrichment,
    Phase,
    RunRecord,
    callback_result,
    path_labels,
    run_type_of,
)
from exporter.letta.models import Run, to_epoch_ns
from exporter.series import catalogue as m
from exporter.units import NS_PER_S

# A run that completed this long ago has had every late write (duration, callback) land.
SETTLED_AGE_NS: Final = 600 * NS_PER_S


class RunBook:
    """Applies the run lifecycle to observations: adopts, settles, counts and forgets runs."""

    def __init__(
        self,
        options: TrackerOptions,
        counter: RunCounter,
        *,
        endpoints: tuple[str, ...] = (),
        agent_allowed: Callable[[str], bool] = lambda agent_id: True,
    ) -> None:
        self.options = options
        self.counter = counter
        self.aggregates = counter.aggregates
        self._endpoints = endpoints
        self._allowed = agent_allowed
        self.records = RunTable(options)
        self.positions = Positions(options.lookback_ns)
        self.approvals = ApprovalFeed(agent_allowed)

    def agent_allowed(self, agent_id: str) -> bool:
        """Whether --agents.allow/--agents.deny admit this agent."""
        return self._allowed(agent_id)

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
        dedupe_floor = self.positions.dedupe_floor_ns()
        self.approvals.observe(run, run.created_ns, now, dedupe_floor)
        record = self.records.get(run.id)
        if record is None:
            floor = dedupe_floor if floor is None else floor
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
                self.records.changed(record)
            return
        before = record.fingerprint()
        record.absorb(run)
        self._check_open(record)
        if record.phase is Phase.OPEN and run.is_terminal:
            record.phase = Phase.SETTLING
            record.terminal_seen_ns = now
        if record.fingerprint() != before:
            # last_seen alone is not persisted eagerly: rewriting every open run each
            # cycle would cost a write per run per cycle for no gain after a restart.
            self.records.changed(record)

    def _first_sight(
        self, run: Run, now: int, *, count: bool, follow_old: bool, floor: int
    ) -> None:
        created = run.created_ns
        terminal = run.is_terminal
        if created < floor and not (follow_old and not terminal):
            return  # at or past the window: could be a run counted and pruned long ago
        if not terminal and now - created > self.options.forget_after_ns:
            return
        if self.positions.is_late(created):
            self.aggregates.inc(m.LATE_RUNS)
        self.positions.saw_created(created)
        if terminal and not count:
            phase = Phase.BASELINE
        elif terminal:
            phase = Phase.SETTLING
        else:
            phase = Phase.OPEN
        self._adopt(run, now, created, phase)

    def observe_backfill(self, run: Run, now: int, created: int | None = None) -> None:
        """A run from a region of the list no walk has visited: new by construction, no dedupe.

        `created` is the run's created_ns when the caller has it already (hot path).
        """
        if not self._allowed(run.agent_id) or run.id in self.records:
            self.observe(run, now)
            return
        if created is None:
            created = run.created_ns
        self.approvals.observe(run, created, now, 0)  # a region no walk has visited
        self.positions.saw_created(created)
        terminal = run.is_terminal
        completed_at = run.completed_at
        fast = terminal and not self._endpoints and completed_at is not None
        if fast and completed_at is not None and created < self.positions.dedupe_floor_ns():
            duration = run.total_duration_ns
            # created + run_ns is when it ended: cheaper than converting completed_at.
            completed = created + duration if duration is not None else None
            if completed is None or now - completed <= SETTLED_AGE_NS:
                completed = to_epoch_ns(completed_at)
            if now - completed > SETTLED_AGE_NS:
                # Old history (the bulk of a backfill): count it without building a record,
                # since no later walk can list it again.
                self.counter.count_sample(_history_sample(run, created, completed))
                return
        if not terminal and now - created > self.options.forget_after_ns:
            return
        self._adopt(run, now, created, Phase.SETTLING if terminal else Phase.OPEN)

    def _adopt(self, run: Run, now: int, created: int, phase: Phase) -> None:
        """Start a record for a run seen for the first time; count it if already settled."""
        record = RunRecord(
            id=run.id,
            agent_id=run.agent_id,
            created_ns=created,
            phase=phase,
            status=run.status,
            terminal_seen_ns=now if phase is not Phase.OPEN else None,
            last_seen_ns=now,
        )
        record.absorb(run)
        self._check_open(record)
        self.records.put(record)
        if phase is Phase.SETTLING and self._settled(record, now):
            self._finish(record)

    def vanished(self, run_id: str, now: int) -> None:
        """A followed run answered 404: deleted (or its agent was)."""
        self.approvals.book.vanished(run_id)
        record = self.records.get(run_id)
        if record is None:
            return
        if record.phase is Phase.SETTLING:
            # It did finish; count what we saw rather than lose it. Its details are gone.
            for endpoint in self._endpoints:
                self.aggregates.inc(m.ENRICHMENT_FAILURES, (endpoint,))
            self.count(record)
        elif record.phase is Phase.OPEN:
            self.aggregates.inc(m.RUNS_DELETED, (self.counter.labels.agent(record.agent_id),))
        self.records.drop(run_id)

    # ---- end of cycle -----------------------------------------------------------

    def finalize(self, now: int) -> int:
        """Count every settling run whose late fields have had time to land."""
        due = [r for r in self.records.in_phase(Phase.SETTLING) if self._settled(r, now)]
        for record in due:
            self._finish(record)
        return len(due)

    def count(self, record: RunRecord) -> None:
        """Count a run now; only its dedupe fields are kept afterwards."""
        self.counter.count(record)
        record.enrich = None
        record.phase = Phase.DONE
        self.records.put(record)

    def housekeeping(self, now: int) -> None:
        """Prune records no walk can list again; expire and cap the open set."""
        floor = self.positions.dedupe_floor_ns()
        walk = self.positions.pending_walk
        keep_below = walk.pos[0] if walk is not None and walk.pos else None
        opts = self.options
        for record in list(self.records.values()):
            if record.phase in (Phase.DONE, Phase.BASELINE):
                # Records below a pending walk's position may be listed by it again.
                if record.created_ns < floor and (
                    keep_below is None or record.created_ns >= keep_below
                ):
                    self.records.drop(record.id)
            elif record.phase is Phase.OPEN:
                age = now - record.created_ns
                if age > opts.forget_after_ns:
                    self.aggregates.inc(m.OPEN_RUNS_DROPPED, ("expired",))
                    self.records.drop(record.id)
                elif age > opts.stale_after_ns and record.next_refresh_ns <= record.last_seen_ns:
                    record.next_refresh_ns = record.last_seen_ns + opts.stale_refresh_ns
        # A deadlock lasts until a run is accepted on its thread; only a thread silent for
        # the forget horizon (its agent deleted, say) is let go.
        self.approvals.book.prune(floor, now - opts.forget_after_ns)
        self._count_refusals()
        open_runs = self.records.in_phase(Phase.OPEN)
        excess = len(open_runs) - opts.max_open_runs
        if excess > 0:
            for record in heapq.nsmallest(excess, open_runs, key=lambda r: r.created_ns):
                self.aggregates.inc(m.OPEN_RUNS_DROPPED, ("capacity",))
                self.records.drop(record.id)

    # ---- persistence ------------------------------------------------------------

    def take_changes(self) -> dict[str, str]:
        """Positions and (when it changed) the approval book, as checkpoint meta."""
        return self.positions.to_meta() | self.approvals.take_changes()

    def load(self, records: list[RunRecord], meta: dict[str, str]) -> None:
        """Restore records, positions and the approval book from the checkpoint."""
        self.records.restore(records)
        self.positions.load(meta)
        self.approvals.load(meta)

    # ---- internals --------------------------------------------------------------

    def _count_refusals(self) -> None:
        """Refusals no wait explains, once a finished walk has listed the runs before
        them (newest first, a refusal is seen before the request that explains it)."""
        listed = self.positions.listed_until_ns
        if listed is None:
            return
        for agent_id in self.approvals.book.take_unexplained(listed):
            agent = self.counter.labels.agent(agent_id)
            self.aggregates.inc(m.RUNS_INCONSISTENT, (agent, REFUSED_WITHOUT_WAIT))

    def _check_open(self, record: RunRecord) -> None:
        """Count a run listed open with a stop reason, once (the flag is persisted)."""
        if record.open_with_stop_reason or not open_with_stop_reason(
            record.status, record.stop_reason
        ):
            return
        record.open_with_stop_reason = True
        agent = self.counter.labels.agent(record.agent_id)
        self.aggregates.inc(m.RUNS_INCONSISTENT, (agent, STOP_REASON_WHILE_OPEN))

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

    def _finish(self, record: RunRecord) -> None:
        """A settled run: count it now, or first fetch its details."""
        if not self._endpoints:
            self.count(record)
            return
        record.phase = Phase.ENRICHING
        record.enrich = Enrichment(pending=list(self._endpoints))
        self.records.changed(record)


def _history_sample(run: Run, created: int, completed: int) -> RunSample:
    """A long-finished run of a backfill, counted straight from the listing."""
    duration = run.total_duration_ns
    return RunSample(
        agent_id=run.agent_id,
        status=run.status,
        stop_reason=run.stop_reason,
        duration_s=duration / NS_PER_S
        if duration is not None
        else (completed - created) / NS_PER_S,
        ttft_ns=run.ttft_ns,
        callback=callback_result(
            run.callback_url is not None, run.callback_status_code, bool(run.callback_error)
        ),
        path=path_labels(run_type_of(run.metadata), run.background),
        error_type=error_type_from_metadata(run.metadata),
        inconsistent=tuple(finished_kinds(run.status, run.stop_reason, True)),
    )
