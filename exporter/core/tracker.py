"""The core's front door: wires its parts and is the one interface the poll layer calls.

The parts stay reachable for the wiring and the tests:

runs        RunBook: observations and the run lifecycle (exporter.core.book.lifecycle)
enrichment  EnrichmentQueue: finished runs waiting for details (the enricher's port)
counter     RunCounter: finished runs into samples (and traces)
tool_names  ToolNames: the tool-name cache
labels      CountLabels: the capped labels
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from exporter.core.book.lifecycle import RunBook
from exporter.core.changes import ChangeSet
from exporter.core.counting.counter import CountLabels, RunCounter
from exporter.core.counting.pricing import PriceTable
from exporter.core.counting.tool_names import ToolNames
from exporter.core.enrichment.queue import EnrichmentQueue
from exporter.core.labels import CappedLabel
from exporter.core.listing.walk import PageResult, Walk
from exporter.core.options import TrackerOptions
from exporter.core.runs.record import RunRecord, endpoints_for
from exporter.core.runs.run_info import TraceBuilder
from exporter.core.views import (
    ApprovalWaitView,
    DeadlockView,
    OpenRunView,
    approval_waits,
    deadlocks,
    open_runs,
)
from exporter.letta.models import Run
from exporter.series.aggregates import Aggregates
from exporter.series.catalogue import MetricSpec


class Tracker:
    """The core of the exporter, built from its options; one per process."""

    def __init__(
        self,
        options: TrackerOptions,
        aggregates: Aggregates,
        agent_label: CappedLabel,
        *,
        agent_allowed: Callable[[str], bool] = lambda agent_id: True,
        model_label: CappedLabel | None = None,
        tool_label: CappedLabel | None = None,
        error_type_label: CappedLabel | None = None,
        run_type_label: CappedLabel | None = None,
        prices: PriceTable | None = None,
        tool_names: dict[str, str] | None = None,
        build_trace: TraceBuilder | None = None,
    ) -> None:
        self.aggregates = aggregates
        given = {
            "model": model_label,
            "tool": tool_label,
            "error_type": error_type_label,
            "run_type": run_type_label,
        }
        self.labels = CountLabels(agent_label, **{k: v for k, v in given.items() if v})
        self.tool_names = ToolNames(tool_names)
        self.counter = RunCounter(
            aggregates, self.labels, self.tool_names, prices=prices, build_trace=build_trace
        )
        endpoints = endpoints_for(options.enrich, traces=build_trace is not None)
        self.runs = RunBook(options, self.counter, endpoints=endpoints, agent_allowed=agent_allowed)
        self.enrichment = EnrichmentQueue(self.runs, endpoints)

    def load(self, records: list[RunRecord], meta: dict[str, str]) -> None:
        """Restore the run book (records, positions, approvals) from the checkpoint."""
        self.runs.load(records, meta)

    def tracked_count(self) -> int:
        """Run records held: open, settling, enriching, or counted within the window."""
        return len(self.runs.records)

    # ---- what the poll layer saw ----------------------------------------------------

    def inc(self, spec: MetricSpec, labels: tuple[str, ...] = ()) -> None:
        """Count one event of the poll layer (a poll, a lost cursor, a stalled page)."""
        self.aggregates.inc(spec, labels)

    def observe(
        self,
        run: Run,
        now: int,
        *,
        count: bool = True,
        follow_old: bool = False,
        floor: int | None = None,
    ) -> None:
        """One observation of a run from any endpoint (`RunBook.observe`)."""
        self.runs.observe(run, now, count=count, follow_old=follow_old, floor=floor)

    def observe_page(self, page: PageResult, walk: Walk, now: int) -> None:
        """The runs a page of `walk` showed for the first time this walk: a counting first
        walk (a backfill) reads a region no walk has visited, any other walk re-reads
        the dedupe window."""
        runs = self.runs
        if walk.first and walk.count:
            for run, created in zip(page.fresh, page.fresh_created, strict=True):
                runs.observe_backfill(run, now, created)
        else:
            for run in page.fresh:
                runs.observe(run, now, count=walk.count, floor=walk.floor_ns)

    def vanished(self, run_id: str, now: int) -> None:
        """A followed run answered 404: deleted (or its agent was)."""
        self.runs.vanished(run_id, now)

    def agent_allowed(self, agent_id: str) -> bool:
        """Whether --agents.allow/--agents.deny admit this agent."""
        return self.runs.agent_allowed(agent_id)

    # ---- listing --------------------------------------------------------------------

    def begin_cycle(self) -> None:
        """A cycle starts: a run first seen now older than what earlier cycles saw from
        the head is a late commit."""
        self.runs.positions.begin_cycle()

    def pending_walk(self) -> Walk | None:
        """The walk still under way (a backfill or catch-up), if any."""
        return self.runs.positions.pending_walk

    def start_walk(self, now: int, *, first_start: bool, backfill_ns: int | None) -> Walk:
        """The pending walk, or a new one from the head; persisted as pending until it
        reaches its floor."""
        positions = self.runs.positions
        walk = positions.pending_walk or positions.new_walk(
            now, first_start=first_start, backfill_ns=backfill_ns
        )
        positions.start_walk(walk)
        return walk

    def drop_walk(self) -> None:
        """Give the walk up; the next cycle starts a new one from the head."""
        self.runs.positions.drop_walk()

    def walk_done(self, started_ns: int) -> None:
        """The walk reached its floor: every run created before `started_ns` was listed."""
        self.runs.positions.walk_done(started_ns)

    def listed_until_ns(self) -> int | None:
        """Every run created before this was listed, as far as the state knows (files of
        0.1.0: the newest run seen); None on a fresh state."""
        return self.runs.positions.listed_until_or_newest_ns()

    def oldest_uncounted_finish_ns(self) -> int | None:
        """When the longest-waiting finished run not yet counted finished, if any."""
        return self.runs.records.oldest_uncounted_finish_ns()

    def dedupe_floor_ns(self) -> int:
        """Runs created before this are outside the window walks re-read."""
        return self.runs.positions.dedupe_floor_ns()

    # ---- what to look at again ------------------------------------------------------

    def open_due_refresh(self, since: int, now: int) -> list[RunRecord]:
        """Open runs not observed since `since` whose refresh is due."""
        return self.runs.records.open_due_refresh(since, now)

    def settling_due_refresh(self, now: int) -> list[RunRecord]:
        """Finished runs past their grace period without an observation made after it."""
        return self.runs.records.settling_due_refresh(now)

    def next_settle_ns(self, now: int) -> int | None:
        """The next moment after `now` when a settling run's wait ends."""
        return self.runs.records.next_settle_ns(now)

    def approval_waits_due_refresh(self, since: int) -> list[str]:
        """Ids of waiting runs no walk listed since `since`: a GET shows a cancel."""
        return self.runs.approvals.book.due_refresh(since)

    def approval_wait_vanished(self, run_id: str) -> None:
        """A waiting run answered 404: its wait ends."""
        self.runs.approvals.book.vanished(run_id)

    def approvals_seeded(self) -> bool:
        """Whether waits older than the first walk have been looked for (once per state)."""
        return self.runs.approvals.seeded

    def seed_approvals(self, runs: list[Run], now: int) -> None:
        """Runs of one thread, fetched to learn whether its newest `requires_approval`
        run (older than any walk) still waits."""
        self.runs.approvals.seed(runs, now)

    def approvals_seeding_done(self) -> None:
        """Waits older than the first walk have been looked for: never again."""
        self.runs.approvals.seeding_done()

    # ---- end of cycle ---------------------------------------------------------------

    def finalize(self, now: int) -> int:
        """Count every settling run whose late fields have had time to land."""
        return self.runs.finalize(now)

    def housekeeping(self, now: int) -> None:
        """Prune records no walk can list again; expire and cap the open set."""
        self.runs.housekeeping(now)

    def take_changes(self) -> ChangeSet:
        """Everything changed since the last call, for `Checkpoint.commit`."""
        changed, removed = self.runs.records.take_changes()
        return ChangeSet(
            changed=changed,
            removed=removed,
            series=self.aggregates.take_changes(),
            meta=self.runs.take_changes(),
            new_label_values=self.labels.take_changes(),
            new_tool_names=self.tool_names.take_changes(),
            new_traces=self.counter.take_changes(),
        )

    # ---- what the gauges show -------------------------------------------------------

    def open_runs(self, now: int) -> Iterator[OpenRunView]:
        """Open runs with the labels the gauges use."""
        return open_runs(self.runs, self.labels.agent, now)

    def approval_waits(self, now: int) -> Iterator[ApprovalWaitView]:
        """Pending approvals with the agent label the gauges use."""
        return approval_waits(self.runs, self.labels.agent, now)

    def deadlocks(self, now: int) -> Iterator[DeadlockView]:
        """Deadlocked threads with the agent label the gauges use."""
        return deadlocks(self.runs, self.labels.agent, now)

    def followed_count(self) -> int:
        """Runs being followed: open or settling."""
        return self.runs.records.followed_count()

    def enrichment_backlog(self) -> int:
        """Finished runs waiting for their details."""
        return self.enrichment.backlog()

    def agents(self) -> list[str]:
        """The agent label's admitted values (agent ids), in admission order."""
        return self.labels.agent.values()
