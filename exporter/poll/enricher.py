"""Enrichment: what a finished run still needs fetched before it counts.

One fetcher per endpoint (the table in `Enricher.__init__`); the tracker says which are
pending for a run and in which order. Letta asking to wait (a postponed request) or a
trace not settled yet defers the run without counting a failed attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from exporter.core.counting.tool_names import ToolNames
from exporter.core.enrichment.availability import EndpointAvailability
from exporter.core.enrichment.queue import EnrichmentQueue
from exporter.core.runs.record import RunRecord
from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaError, LettaNotFound, LettaNotImplemented, LettaPostponed
from exporter.poll.enrich_sources import ToolSource, not_served_or_raise
from exporter.poll.message_walk import MessageWalk
from exporter.poll.options import PollOptions
from exporter.poll.scope import ScopeCheck
from exporter.poll.step_walk import StepsWalk
from exporter.traces.run_tracer import RunTracer
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

_MIN_BUDGET_S: Final = 1.0

Fetcher = Callable[[RunRecord, int], Awaitable[bool]]
"""Fetch one endpoint's detail of a run; False when it is too early to ask."""


@dataclass(frozen=True, slots=True)
class _Source:
    """How one enrichment endpoint is fetched, and what "not served" means for it."""

    fetch: Fetcher
    own_fallback: bool = False
    """Decides itself what to ask when the endpoint is not served (/metrics: messages)."""
    optional: bool = False
    """Not served means nothing is missing (/trace: the trace is built from run data)."""


class Enricher:
    """Fetches the pending details of finished runs, a batch per cycle."""

    def __init__(
        self,
        client: LettaClient,
        enrichment: EnrichmentQueue,
        tool_names: ToolNames,
        options: PollOptions,
        *,
        scope: ScopeCheck,
        tracer: RunTracer | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._enrichment = enrichment
        self._options = options
        self._scope = scope
        self._tracer = tracer
        self._monotonic = monotonic
        self.availability = EndpointAvailability()
        self.availability.register(*enrichment.endpoints)
        if "metrics" in enrichment.endpoints:
            self.availability.register("messages")  # the tools' source without /metrics
        self._tools = ToolSource(client, enrichment, tool_names, self.availability)
        self._walk = MessageWalk(client, enrichment) if "metrics" in enrichment.endpoints else None
        self._steps_walk = (
            StepsWalk(client, enrichment, scope) if "steps" in enrichment.endpoints else None
        )
        self._sources: dict[str, _Source] = {
            "steps": _Source(self._steps),
            "usage": _Source(self._usage),
            "metrics": _Source(self._metrics, own_fallback=True),
            "step_timings": _Source(self._step_timings),
            "trace": _Source(self._trace, optional=True),
        }

    async def enrich(self, now: int) -> bool:
        """Fetch the details of the runs due; True when more are due right away."""
        options = self._options
        due = self._enrichment.due(now, options.enrich_batch + 1)
        if not due:
            return False
        more = len(due) > options.enrich_batch
        due = due[: options.enrich_batch]
        # One walk over every run's steps, and one down every run's messages, answer the
        # steps and tools of many runs at once; what they do not cover is asked per run.
        if self._steps_walk is not None:
            await self._steps_walk.serve(due, now)
        if self._walk is not None:
            await self._walk.serve(due, now)
        semaphore = asyncio.Semaphore(options.enrich_concurrency)
        # Counts reach /metrics only when the cycle commits: while Letta is slow or the
        # pace is cut by 429s, runs not started within the budget wait for the next
        # cycle (at once) rather than holding back what was already fetched.
        stop_starting = self._monotonic() + max(options.interval_s, _MIN_BUDGET_S)
        skipped = False

        async def enrich_one(record: RunRecord) -> None:
            nonlocal skipped
            async with semaphore:
                if self._monotonic() > stop_starting:
                    skipped = True
                    return
                await self._enrich_run(record, now)

        async with asyncio.TaskGroup() as group:
            for record in due:
                # Not counted by a walk's answer, nor deferred by one (a pending step).
                if record.enrich is not None and record.enrich.next_try_ns <= now:
                    group.create_task(enrich_one(record))
        return more or skipped

    async def _enrich_run(self, record: RunRecord, now: int) -> None:
        enrichment = self._enrichment
        assert record.enrich is not None
        for endpoint in list(record.enrich.pending):
            if record.enrich is None:
                return  # the last answer completed the run and it was counted
            if endpoint not in record.enrich.pending:
                continue  # made unnecessary by an earlier answer (/usage after /steps)
            try:
                if not await self._fetch(record, endpoint, now):
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

    async def _fetch(self, record: RunRecord, endpoint: str, now: int) -> bool:
        """Fetch one endpoint's detail of a run; False when it is too early to ask."""
        source = self._sources[endpoint]
        if source.own_fallback:
            return await source.fetch(record, now)
        if not self.availability.should_ask(endpoint, now):
            self._enrichment.skipped(record, endpoint)  # not served here
            return True
        try:
            fetched = await source.fetch(record, now)
        except (LettaNotFound, LettaNotImplemented) as exc:
            await not_served_or_raise(
                self._client, self.availability, record.id, endpoint, exc, now
            )
            if source.optional:
                self._enrichment.skipped(record, endpoint)
            else:
                self._enrichment.failed(record, endpoint, now, permanent=True)
            return True
        if fetched:
            self.availability.answered(endpoint)
        return fetched

    async def _usage(self, record: RunRecord, now: int) -> bool:
        self._enrichment.answered_usage(record, await self._client.get_usage(record.id))
        return True

    async def _steps(self, record: RunRecord, now: int) -> bool:
        steps = await self._client.list_steps(record.id)
        self._scope.observe(steps)
        self._enrichment.answered_steps(record, steps)
        return True

    async def _metrics(self, record: RunRecord, now: int) -> bool:
        await self._tools.fetch(record, now)  # falls back on the run's messages
        return True

    async def _step_timings(self, record: RunRecord, now: int) -> bool:
        assert record.enrich is not None
        seconds: list[tuple[str, float]] = []
        for step_id, model in record.enrich.step_ids or ():
            try:
                metrics = await self._client.get_step_metrics(step_id)
            except LettaNotFound:
                continue  # a step without a metrics row has no timing to report
            if metrics.step_ns is not None and metrics.step_ns >= 0:
                seconds.append((model, metrics.step_ns / NS_PER_S))
        self._enrichment.answered_step_timings(record, seconds)
        return True

    async def _trace(self, record: RunRecord, now: int) -> bool:
        """Fetch and store the run's `/trace` rows; False when it is too early to ask."""
        enrichment, tracer = self._enrichment, self._tracer
        assert tracer is not None
        ready = enrichment.trace_ready_ns(record)
        if ready > now:
            enrichment.defer(record, ready)
            return False
        rows = await self._client.get_trace(record.id)
        enrichment.answered_trace(record, tracer.from_rows(record.id, rows))
        return True
