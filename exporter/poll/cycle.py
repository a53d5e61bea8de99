"""One poll cycle: discover, follow, settle, enrich, tidy, commit, publish; and the loop.

Each cycle ends with one checkpoint commit (counts, records and span outbox in one
transaction) and then publishes an immutable snapshot, so /metrics only ever shows
committed counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from exporter.core.enrichment.availability import EndpointAvailability
from exporter.core.tracker import Tracker
from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaAuthError, LettaError, LettaPostponed
from exporter.metrics.snapshot import Health, Snapshot
from exporter.poll.agent_names import AgentNames
from exporter.poll.approval_seed import seed_approvals
from exporter.poll.backoff import (
    KeyFileWatch,
    PollBackoff,
    Wait,
    wait_or_stop,
    wait_unless_key_changes,
)
from exporter.poll.discovery import Discovery
from exporter.poll.enricher import Enricher
from exporter.poll.follower import Follower
from exporter.poll.options import PollOptions
from exporter.poll.pager import RunPager
from exporter.poll.reporting import FailureLog, WalkProgress
from exporter.poll.scope import ScopeCheck
from exporter.series import catalogue as m
from exporter.store.checkpoint import Checkpoint
from exporter.traces.run_tracer import RunTracer
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

_SETTLE_SLACK_S: Final = 0.05


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
        key_file: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Wait = wait_or_stop,
    ) -> None:
        self._client = client
        self._tracker = tracker
        self._checkpoint = checkpoint
        self._options = options
        self._publish = publish
        self._clock = clock
        self.health = Health()
        self._pager = RunPager(
            client,
            on_lost_cursor=lambda: tracker.inc(m.CURSOR_LOST),
            on_direction_switch=lambda: tracker.inc(m.CURSOR_DIRECTION_SWITCHES),
        )
        self._discovery = Discovery(
            tracker, self._pager, options, first_start=first_start, now=self._now()
        )
        self._follower = Follower(client, tracker, self._pager, options, self._now)
        self._enricher = Enricher(
            client,
            tracker.enrichment,
            tracker.tool_names,
            options,
            scope=scope or ScopeCheck(None, None),
            tracer=tracer,
        )
        self._more_enrichment = False
        self._spans_pending = spans_pending
        self._agent_names = agent_names
        self._failures = FailureLog(monotonic)
        self._progress = WalkProgress(monotonic)
        self._monotonic = monotonic
        self._wait = wait
        self._backoff = PollBackoff(options.interval_s)
        self._key = KeyFileWatch(key_file)
        self._rejected = False  # the last cycle failed on a 401/403

    @property
    def endpoints(self) -> EndpointAvailability:
        """Which enrichment endpoints this Letta serves (for /readyz and the gauges)."""
        return self._enricher.availability

    def _now(self) -> int:
        return int(self._clock() * NS_PER_S)

    async def cycle(self) -> bool:
        """Run one cycle; returns True when every request of it succeeded."""
        started = time.perf_counter()
        now = self._now()
        tracker = self._tracker
        tracker.inc(m.POLLS)
        failure: LettaError | None = None
        tracker.begin_cycle()
        try:
            await self._discovery.walk(now, self._backpressure)
            await self._follower.refresh_open(now, first_start=self._discovery.first_start)
            await self._follower.refresh_settling(now)
            await self._follower.refresh_approvals(now)
            if not tracker.approvals_seeded():
                await seed_approvals(self._client, tracker, now)
        except LettaError as exc:
            failure = exc
            tracker.inc(m.POLL_ERRORS, (exc.reason,))
        tracker.finalize(self._now())
        # Enrichment failures are per run (retried with backoff), never a failed poll;
        # but a server that rejects the key or cannot be reached is not asked for more.
        self._more_enrichment = False
        if failure is None or not _unusable(failure):
            self._more_enrichment = await self._enricher.enrich(self._now())
        tracker.housekeeping(self._now())
        if failure is None:
            await self._read_agent_names()
        self._commit()
        self._settle_health(failure)
        self.health.poll_duration_s = time.perf_counter() - started
        snapshot = self.snapshot()
        self._publish(snapshot)
        log.debug(
            "poll cycle %s in %.3fs: %d runs followed, %d awaiting enrichment, %d open",
            "ok" if failure is None else "failed",
            self.health.poll_duration_s,
            snapshot.followed,
            snapshot.enrichment_backlog,
            len(snapshot.open_runs),
        )
        self._progress.report(tracker.pending_walk())
        return failure is None

    def _settle_health(self, failure: LettaError | None) -> None:
        """Health, backoff and the state-change log line after a cycle."""
        self._rejected = isinstance(failure, LettaAuthError)
        if failure is None:
            self._discovery.first_start = False
            self.health.mark_success(self._clock())
            self._backoff.succeeded()
            self._failures.succeeded()
        else:
            self.health.mark_failure(self._clock())
            asked = failure.wait_s if isinstance(failure, LettaPostponed) else None
            self._failures.failed(failure, self._backoff.failed(asked))
            if self._rejected:
                self._key.rejected()
        self.health.backoff_s = self._backoff.wait_s

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; a cycle in progress always finishes and commits."""
        while not stop.is_set():
            started = self._monotonic()
            if not await self.cycle():
                # After a failure nothing shortens the backoff but a new API key.
                wait_s = self._backoff.wait_s
                if self._rejected:
                    await wait_unless_key_changes(self._wait, stop, wait_s, self._key)
                else:
                    await self._wait(stop, wait_s)
                continue
            # A pending walk (backfill or catch-up) or due enrichment continues at once.
            busy = self._tracker.pending_walk() is not None and not self._backpressure()
            delay = 0.0 if busy or self._more_enrichment else self._options.interval_s
            delay = max(0.0, delay - (self._monotonic() - started))
            # A run whose grace period ends before the next cycle is looked at then, so
            # it is counted within one interval plus the grace period of finishing.
            settle = self._tracker.next_settle_ns(self._now())
            if settle is not None:
                delay = min(delay, (settle - self._now()) / NS_PER_S + _SETTLE_SLACK_S)
            await self._wait(stop, delay if delay > 0 else 0.001)

    def snapshot(self) -> Snapshot:
        """An immutable view of the committed state, for the collector."""
        tracker = self._tracker
        walk = tracker.pending_walk()
        now = self._now()
        return Snapshot(
            aggregates=tracker.aggregates.copy(),
            open_runs=tuple(tracker.open_runs(now)),
            approval_waits=tuple(tracker.approval_waits(now)),
            deadlocks=tuple(tracker.deadlocks(now)),
            followed=tracker.followed_count(),
            enrichment_backlog=tracker.enrichment_backlog(),
            health=self.health.copy(),
            backfill_remaining_s=(walk.remaining_ns() / NS_PER_S) if walk else 0.0,
            spans_pending=self._spans_pending(),
            agent_info=self._agent_names.info(tracker.agents())
            if self._agent_names is not None
            else (),
            cursor_param=self._pager.cursor_param(),
            counting_lag_s=self._discovery.counting_lag_ns(now) / NS_PER_S,
        )

    async def _read_agent_names(self) -> None:
        # Names only label what was counted: a failed read never fails the poll.
        names = self._agent_names
        agents = self._tracker.agents()
        if names is not None and names.due(agents):
            await names.refresh(agents)

    def _backpressure(self) -> bool:
        return self._tracker.enrichment_backlog() >= self._options.max_enrich_backlog

    def _commit(self) -> None:
        self._checkpoint.commit(self._tracker.take_changes())


def _unusable(failure: LettaError) -> bool:
    """Whether a failed cycle says no request can succeed now: the key is rejected or
    the server cannot be reached."""
    return isinstance(failure, LettaAuthError) or failure.reason == "connect"
