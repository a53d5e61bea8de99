"""One poll cycle (scan → follow open runs → finalize → commit → publish) and the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from exporter.core.availability import EndpointAvailability
from exporter.core.records import RunRecord
from exporter.core.tracker import Tracker
from exporter.core.views import approval_waits, open_runs
from exporter.core.walk import Walk
from exporter.letta.client import LettaClient
from exporter.letta.errors import (
    LettaAuthError,
    LettaError,
    LettaNotFound,
    LettaNotImplemented,
    LettaPostponed,
    LettaRequestError,
)
from exporter.letta.models import Run, Tool
from exporter.metrics import catalogue as m
from exporter.metrics.snapshot import Health, Snapshot
from exporter.poll.agent_names import AgentNames
from exporter.poll.enrich_sources import ToolSource, not_served_or_raise
from exporter.poll.pager import RunPager, next_limit
from exporter.poll.scope import ScopeCheck
from exporter.store.checkpoint import Checkpoint
from exporter.traces.run_tracer import RunTracer
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

_GET_CONCURRENCY: Final = 8
_MIN_FIRST_PAGE: Final = 20
# Looking for approvals that wait since before the first scan: the newest runs that
# stopped requires_approval, then each such thread's newest runs.
_SEED_APPROVAL_RUNS: Final = 100
_SEED_THREAD_RUNS: Final = 50
_SETTLE_SLACK_S: Final = 0.05
_MIN_ENRICH_BUDGET_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class PollOptions:
    """How the poller pages and paces itself."""

    interval_s: float = 15.0
    page_size: int = 1000
    max_pages: int = 100
    backfill_ns: int | None = None
    enrich_concurrency: int = 8
    enrich_batch: int = 5000
    max_enrich_backlog: int = 20_000


@dataclass(slots=True)
class _CycleStats:
    pages: int = 0
    requests_before: float = 0.0
    errors: list[str] = field(default_factory=list)


class Poller:
    """Drives the tracker from the Letta API and commits after every cycle."""

    def __init__(
        self,
        client: LettaClient,
        tracker: Tracker,
        checkpoint: Checkpoint,
        options: PollOptions,
        *,
        publish: Callable[[Snapshot], None],
        first_start: bool,
        clock: Callable[[], float] = time.time,
        spans_pending: Callable[[], int] = lambda: 0,
        agent_names: AgentNames | None = None,
        scope: ScopeCheck | None = None,
        tracer: RunTracer | None = None,
    ) -> None:
        self._client = client
        self._tracker = tracker
        self._runs = tracker.runs
        self._tracer = tracer
        self._checkpoint = checkpoint
        self._options = options
        self._publish = publish
        self._first_start = first_start
        self._clock = clock
        self.health = Health()
        self._last_head_rows = options.page_size
        self._last_error: tuple[str, float] | None = None
        self._pager = RunPager(
            client,
            on_lost_cursor=lambda: tracker.aggregates.inc(m.CURSOR_LOST),
            on_direction_switch=lambda: tracker.aggregates.inc(m.CURSOR_DIRECTION_SWITCHES),
        )
        self._progress: tuple[float, int, int, float] | None = None
        self._more_enrichment = False
        self._tool_lookups: dict[str, asyncio.Future[Tool]] = {}
        self._spans_pending = spans_pending
        self.endpoints = EndpointAvailability()
        self.endpoints.register(*tracker.enrichment.endpoints)
        if "metrics" in tracker.enrichment.endpoints:
            self.endpoints.register("messages")  # where the tools come from without /metrics
        self._tools = ToolSource(client, tracker, self.endpoints, self._resolve_tool)
        self._agent_names = agent_names
        self._scope = scope or ScopeCheck(None, None)
        # Until a walk reaches its floor, what the state says was listed (files of 0.1.0:
        # the newest run seen).
        positions = tracker.runs.positions
        listed = (
            positions.listed_until_ns if positions.listed_until_ns is not None else positions.hwm_ns
        )
        self._listed_until_ns = listed if listed is not None else self._now()
        self._walk_started_ns = self._listed_until_ns
        self._listed_all = False
        # On a fresh state, runs that finished before the exporter started are history
        # (backfill): they wait from the start, not from their completion.
        self._history_until_ns = self._now() if first_start else 0

    def _now(self) -> int:
        return int(self._clock() * NS_PER_S)

    async def cycle(self) -> bool:
        """Run one cycle; returns True when every request of it succeeded."""
        started = time.perf_counter()
        now = self._now()
        tracker = self._tracker
        agg = tracker.aggregates
        agg.inc(m.POLLS)
        ok = True
        runs = self._runs
        runs.positions.begin_cycle()
        try:
            await self._scan(now)
            await self._refresh_open(now)
            await self._refresh_settling(now)
            await self._refresh_approvals(now)
            if not runs.approvals.seeded:
                await self._seed_approvals(now)
        except LettaError as exc:
            ok = False
            agg.inc(m.POLL_ERRORS, (exc.reason,))
            self._log_failure(exc)
        runs.finalize(self._now())
        # Enrichment failures are per run (retried with backoff), never a failed poll.
        self._more_enrichment = await self._enrich(self._now())
        runs.housekeeping(self._now())
        await self._read_agent_names()
        self._commit()
        if ok:
            self._first_start = False
            self.health.mark_success(self._clock())
            if self._last_error is not None:
                log.info("Letta API reachable again")
                self._last_error = None
        else:
            self.health.mark_failure(self._clock())
        self.health.poll_duration_s = time.perf_counter() - started
        snapshot = self.snapshot()
        self._publish(snapshot)
        log.debug(
            "poll cycle %s in %.3fs: %d runs followed, %d awaiting enrichment, %d open",
            "ok" if ok else "failed",
            self.health.poll_duration_s,
            snapshot.followed,
            snapshot.enrichment_backlog,
            len(snapshot.open_runs),
        )
        self._log_progress()
        return ok

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; a cycle in progress always finishes and commits."""
        while not stop.is_set():
            started = time.monotonic()
            await self.cycle()
            # A pending walk (backfill or catch-up) or due enrichment continues at once.
            busy = self._runs.positions.scan is not None and not self._backpressure()
            delay = 0.0 if busy or self._more_enrichment else self._options.interval_s
            delay = max(0.0, delay - (time.monotonic() - started))
            # A run whose grace period ends before the next cycle is looked at then, so
            # it is counted within one interval plus the grace period of finishing.
            settle = self._runs.records.next_settle_ns(self._now())
            if settle is not None:
                delay = min(delay, (settle - self._now()) / NS_PER_S + _SETTLE_SLACK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay if delay > 0 else 0.001)

    def snapshot(self) -> Snapshot:
        """An immutable view of the committed state, for the collector."""
        tracker = self._tracker
        now = self._now()
        scan = tracker.runs.positions.scan
        return Snapshot(
            aggregates=tracker.aggregates.copy(),
            open_runs=tuple(open_runs(tracker.runs, tracker.labels.agent, now)),
            approval_waits=tuple(approval_waits(tracker.runs, tracker.labels.agent, now)),
            followed=tracker.runs.records.followed_count(),
            enrichment_backlog=tracker.enrichment.backlog(),
            health=self.health.copy(),
            backfill_remaining_s=(scan.remaining_ns() / NS_PER_S) if scan else 0.0,
            spans_pending=self._spans_pending(),
            agent_info=self._agent_names.info(tracker.labels.agent.values())
            if self._agent_names is not None
            else (),
            cursor_param=self._pager.direction.label,
            counting_lag_s=self._counting_lag_ns(now) / NS_PER_S,
        )

    async def _read_agent_names(self) -> None:
        # Names only label what was counted: a failed read never fails the poll.
        names = self._agent_names
        agents = self._tracker.labels.agent.values()
        if names is not None and names.due(agents):
            await names.refresh(agents)

    def _counting_lag_ns(self, now: int) -> int:
        """Age of the oldest finished run not counted yet: known ones by completed_at;
        while a walk has not reached its floor, unlisted runs may have finished as long
        ago as the last complete listing began."""
        oldest = self._runs.records.oldest_uncounted_finish_ns()
        lag = now - max(oldest, self._history_until_ns) if oldest is not None else 0
        if not self._listed_all:
            lag = max(lag, now - self._listed_until_ns)
        return max(0, lag)

    # ---- discovery ------------------------------------------------------------------

    def _new_scan(self) -> Walk:
        positions = self._runs.positions
        lookback = self._runs.options.lookback_ns
        if not self._first_start or positions.hwm_ns is not None:
            floor = positions.dedupe_floor_ns() if positions.hwm_ns is not None else None
            if floor is None and positions.listed_until_ns is not None:
                # Cycles ran but saw no run yet: whatever came since is new.
                floor = positions.listed_until_ns - lookback
            return Walk(floor_ns=floor, count=True, first_lookback_ns=lookback)
        if self._options.backfill_ns is not None:
            return Walk(
                floor_ns=self._now() - self._options.backfill_ns,
                count=True,
                first=True,
                first_lookback_ns=lookback,
            )
        return Walk(floor_ns=None, count=False, first=True, first_lookback_ns=lookback)

    async def _scan(self, now: int) -> None:
        runs = self._runs
        positions = runs.positions
        if positions.scan is None:
            self._walk_started_ns = now
        walk = positions.scan or self._new_scan()
        positions.start_walk(walk)
        self._listed_all = False
        walk.new_cycle()
        resumed = walk.pos is not None
        limit = self._options.page_size
        if not resumed:
            # The head page only has to reach back one lookback window: size it on the
            # last cycle so an idle cycle reads tens of runs, not a thousand.
            limit = min(limit, max(_MIN_FIRST_PAGE, 2 * self._last_head_rows + 10))
        head_rows = 0
        for _ in range(self._options.max_pages):
            if self._backpressure():
                return  # the walk waits (persisted) until enrichment catches up
            step = await self._pager.next_page(walk, limit, active=False)
            if walk.first and walk.count:
                for run, created in zip(step.fresh, step.fresh_created, strict=True):
                    runs.observe_backfill(run, now, created)
            else:
                for run in step.fresh:
                    runs.observe(run, now, count=walk.count, floor=walk.floor_ns)
            head_rows += len(step.fresh)
            if step.stalled:
                runs.aggregates.inc(m.PAGINATION_STALLS)
                log.warning("a runs page made no progress; ending this walk until next cycle")
                if not walk.first and not resumed:
                    positions.drop_walk()
                return
            if step.done:
                positions.walk_done(self._walk_started_ns)
                self._listed_all = True
                self._listed_until_ns = self._walk_started_ns
                if not resumed:
                    self._last_head_rows = head_rows
                return
            limit = next_limit(step, limit, self._options.page_size)

    async def _refresh_open(self, since: int) -> None:
        records = self._runs.records
        now = self._now()
        unseen = records.unseen_open(since, now)
        if self._first_start or len(unseen) > 1:
            floor = 0 if self._first_start else min(r.created_ns for r in unseen)
            await self._walk_active(floor, now)
            unseen = records.unseen_open(since, now)
        await self._get_each(unseen, now)

    async def _walk_active(self, floor: int, now: int) -> None:
        walk = Walk(floor_ns=floor)
        runs = self._runs
        limit = self._options.page_size
        for _ in range(self._options.max_pages):
            step = await self._pager.next_page(walk, limit, active=True)
            limit = next_limit(step, limit, self._options.page_size)
            for run in step.fresh:
                runs.observe(run, now, follow_old=True)
            if step.stalled:
                runs.aggregates.inc(m.PAGINATION_STALLS)
                return
            if step.done:
                return

    def _backpressure(self) -> bool:
        return self._tracker.enrichment.backlog() >= self._options.max_enrich_backlog

    async def _enrich(self, now: int) -> bool:
        """Fetch the details of finished runs; True when more are due right away."""
        due = self._tracker.enrichment.due(now, self._options.enrich_batch + 1)
        if not due:
            return False
        more = len(due) > self._options.enrich_batch
        semaphore = asyncio.Semaphore(self._options.enrich_concurrency)
        # Counts reach /metrics only when the cycle commits: while Letta is slow or the
        # pace is cut by 429s, runs not started within the budget wait for the next
        # cycle (at once) rather than holding back what was already fetched.
        stop_starting = time.monotonic() + max(self._options.interval_s, _MIN_ENRICH_BUDGET_S)
        skipped = False

        async def enrich_one(record: RunRecord) -> None:
            nonlocal skipped
            async with semaphore:
                if time.monotonic() > stop_starting:
                    skipped = True
                    return
                await self._enrich_run(record, now)

        async with asyncio.TaskGroup() as group:
            for record in due[: self._options.enrich_batch]:
                group.create_task(enrich_one(record))
        return more or skipped

    async def _enrich_run(self, record: RunRecord, now: int) -> None:
        enrichment = self._tracker.enrichment
        assert record.enrich is not None
        for endpoint in list(record.enrich.pending):
            if record.enrich is None:
                return  # the last answer completed the run and it was counted
            if endpoint not in record.enrich.pending:
                continue  # made unnecessary by an earlier answer (/usage after /steps)
            try:
                if not await self._enrich_endpoint(record, endpoint, now):
                    return  # deferred until the server's spans have settled
            except LettaPostponed as exc:
                # Letta asked to wait: not a failed attempt, the run just waits.
                enrichment.defer(record, now + int(exc.wait_s * NS_PER_S))
                return
            except LettaNotFound:
                log.info("run %s: %s answered 404; counting it without", record.id, endpoint)
                enrichment.failed(record, endpoint, now, permanent=True)
            except LettaError as exc:
                log.debug("run %s: fetching %s failed (%s); will retry", record.id, endpoint, exc)
                enrichment.failed(record, endpoint, now, permanent=False)
                return  # the run waits its backoff before any further request

    async def _enrich_endpoint(self, record: RunRecord, endpoint: str, now: int) -> bool:
        """Fetch one endpoint's detail of a run; False when it is too early to ask."""
        enrichment, client = self._tracker.enrichment, self._client
        if endpoint == "metrics":
            await self._tools.fetch(record, now)  # falls back on the run's messages
            return True
        if not self.endpoints.should_ask(endpoint, now):
            enrichment.skipped(record, endpoint)  # not served here
            return True
        try:
            if endpoint == "usage":
                enrichment.answered_usage(record, await client.get_usage(record.id))
            elif endpoint == "steps":
                steps = await client.list_steps(record.id)
                self._scope.observe(steps)
                enrichment.answered_steps(record, steps)
            elif endpoint == "step_timings":
                enrichment.answered_step_timings(record, await self._step_timings(record))
            elif endpoint == "trace" and not await self._fetch_trace(record, now):
                return False
        except (LettaNotFound, LettaNotImplemented) as exc:
            await not_served_or_raise(client, self.endpoints, record.id, endpoint, exc, now)
            if endpoint == "trace":
                enrichment.skipped(record, endpoint)  # built from run data
            else:
                enrichment.failed(record, endpoint, now, permanent=True)
            return True
        self.endpoints.answered(endpoint)
        return True

    async def _fetch_trace(self, record: RunRecord, now: int) -> bool:
        """Fetch and store the run's `/trace` rows; False when it is too early to ask."""
        enrichment, tracer = self._tracker.enrichment, self._tracer
        assert tracer is not None
        ready = enrichment.trace_ready_ns(record)
        if ready > now:
            enrichment.defer(record, ready)
            return False
        rows = await self._client.get_trace(record.id)
        enrichment.answered_trace(record, tracer.from_rows(record.id, rows))
        return True

    async def _resolve_tool(self, tool_id: str) -> None:
        # Runs enriched together often share tools: one lookup per id, awaited by all.
        lookup = self._tool_lookups.get(tool_id)
        if lookup is None:
            lookup = asyncio.ensure_future(self._client.get_tool(tool_id))
            self._tool_lookups[tool_id] = lookup
        try:
            name = (await asyncio.shield(lookup)).name
        except (LettaNotFound, LettaRequestError):
            # Deleted, foreign or malformed id (404/422): the id is the best label there is.
            name = tool_id
        finally:
            if lookup.done():
                self._tool_lookups.pop(tool_id, None)
        self._tracker.tool_names.name(tool_id, name)

    async def _step_timings(self, record: RunRecord) -> list[tuple[str, float]]:
        assert record.enrich is not None
        seconds: list[tuple[str, float]] = []
        for step_id, model in record.enrich.step_ids or ():
            try:
                metrics = await self._client.get_step_metrics(step_id)
            except LettaNotFound:
                continue  # a step without a metrics row has no timing to report
            if metrics.step_ns is not None and metrics.step_ns >= 0:
                seconds.append((model, metrics.step_ns / NS_PER_S))
        return seconds

    async def _refresh_approvals(self, since: int) -> None:
        """GET each waiting run the scan no longer lists, so a cancel is seen; within
        the re-scanned window this costs nothing."""
        runs = self._runs
        due = runs.approvals.book.due_refresh(since)
        if not due:
            return
        now = self._now()
        failures: list[LettaError] = []
        semaphore = asyncio.Semaphore(_GET_CONCURRENCY)

        async def refresh(run_id: str) -> None:
            async with semaphore:
                try:
                    run = await self._client.get_run(run_id)
                except LettaNotFound:
                    runs.approvals.book.vanished(run_id)
                    return
                except LettaError as exc:
                    failures.append(exc)
                    return
            runs.observe(run, now, follow_old=True)

        async with asyncio.TaskGroup() as group:
            for run_id in due:
                group.create_task(refresh(run_id))
        if failures:
            raise failures[0]

    async def _seed_approvals(self, now: int) -> None:
        """Once (first start, or upgrade of an older state file): find approvals that
        wait since before the window the first scan covered. Costs 1 request, plus 1 per
        agent or conversation whose newest `requires_approval` run is older than that."""
        runs = self._runs
        client = self._client
        floor = runs.positions.dedupe_floor_ns()
        asked = await client.list_runs_where(
            limit=_SEED_APPROVAL_RUNS, stop_reason="requires_approval"
        )
        newest: dict[tuple[str, str], Run] = {}
        for run in asked.runs:  # newest first
            newest.setdefault((run.agent_id, run.conversation_id or ""), run)
        for (agent, conversation), waiting in newest.items():
            if waiting.created_ns >= floor or not runs.agent_allowed(agent):
                continue  # the scans see this one and what answered it
            filters = {"agent_id": agent}
            if conversation:
                filters["conversation_id"] = conversation
            page = await client.list_runs_where(limit=_SEED_THREAD_RUNS, **filters)
            later = [
                r
                for r in page.runs
                if (r.conversation_id or "") == conversation and r.created_ns > waiting.created_ns
            ]
            full = page.raw_count >= _SEED_THREAD_RUNS
            if (
                not later
                and full
                and (not page.runs or page.runs[-1].created_ns > waiting.created_ns)
            ):
                # The agent's own messages cannot be filtered from its conversations': a
                # full page of newer runs of other threads may hide the answer. Better no
                # wait than a false page.
                continue
            # Oldest first, so a continuation still working is seen as working on it.
            runs.approvals.seed([waiting, *reversed(later)], now)
        runs.approvals.seeding_done()

    async def _refresh_settling(self, now: int) -> None:
        await self._get_each(self._runs.records.settling_needing_refresh(now), now)

    async def _get_each(self, records: list[RunRecord], now: int) -> None:
        if not records:
            return
        semaphore = asyncio.Semaphore(_GET_CONCURRENCY)
        runs = self._runs
        failures: list[LettaError] = []

        async def refresh(record: RunRecord) -> None:
            async with semaphore:
                try:
                    run = await self._client.get_run(record.id)
                except LettaNotFound:
                    log.info("run %s disappeared (404) while followed", record.id)
                    runs.vanished(record.id, now)
                    return
                except LettaError as exc:
                    # Kept out of the TaskGroup, which would wrap it in an ExceptionGroup
                    # that the cycle's `except LettaError` cannot catch.
                    failures.append(exc)
                    return
            runs.observe(run, now, follow_old=True)

        async with asyncio.TaskGroup() as group:
            for record in records:
                group.create_task(refresh(record))
        if failures:
            raise failures[0]  # the other runs were refreshed; these wait for next cycle

    # ---- bookkeeping ----------------------------------------------------------------

    def _commit(self) -> None:
        self._checkpoint.commit(self._tracker.take_changes())

    def _log_failure(self, exc: LettaError) -> None:
        # One line per distinct problem, then a reminder every 5 minutes: no log storm
        # while Letta is down.
        key = f"{type(exc).__name__}:{exc.reason}"
        now = time.monotonic()
        last = self._last_error
        if last is not None and last[0] == key and now - last[1] < 300:
            log.debug("poll failed again: %s", exc)
            return
        self._last_error = (key, now)
        if isinstance(exc, LettaAuthError):
            log.error("Letta rejected the credentials: %s", exc)
        else:
            log.warning("poll failed (%s): %s", exc.reason, exc)

    def _log_progress(self) -> None:
        """Backfill/catch-up progress: pages, runs/s and ETA, at most every 5 seconds."""
        walk = self._runs.positions.scan
        if walk is None or walk.pos is None:
            self._progress = None
            return
        now = time.monotonic()
        remaining = walk.remaining_ns()
        if self._progress is None:
            self._progress = (now, walk.runs, remaining, now)
            return
        started, runs0, remaining0, last_log = self._progress
        if now - last_log < 5.0:
            return
        self._progress = (started, runs0, remaining0, now)
        elapsed = max(now - started, 1e-9)
        rate = (walk.runs - runs0) / elapsed
        done_ns = remaining0 - remaining
        eta = remaining / done_ns * elapsed if done_ns > 0 else float("inf")
        log.info(
            "walking history: %d pages, %d runs, %.0f runs/s, %.0f s of history left, ETA %s",
            walk.pages,
            walk.runs,
            rate,
            remaining / NS_PER_S,
            f"{eta:.0f} s" if eta != float("inf") else "unknown",
        )
