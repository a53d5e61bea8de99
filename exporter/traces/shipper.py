"""Sends the span outbox to the trace backend, beside the poll loop, never in its way.

A counted run's spans sit in the state file's outbox (written in the commit that counted
the run). The shipper reads due entries, exports them through the `SpanSink`, deletes
what went out and reschedules what failed with backoff. A dead or slow collector costs
traces, never metrics: the outbox is capped (oldest dropped and counted) and the poll
loop never waits on an export. A crash between an export and the outbox delete resends
that run once, with the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import Checkpoint, OutboxEntry
from exporter.traces.codec import span_from_dict
from exporter.traces.sink import DROPPED, SpanSink
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

_MAX_BACKOFF_NS: Final = 300 * NS_PER_S


@dataclass(frozen=True, slots=True)
class ShipperOptions:
    """Pacing and bounds of span export."""

    interval_s: float = 1.0
    batch_runs: int = 256
    max_pending_runs: int = 10_000
    backoff_ns: int = 2 * NS_PER_S


class SpanShipper:
    """Moves counted runs' spans from the outbox to the sink."""

    def __init__(
        self,
        sink: SpanSink,
        checkpoint: Checkpoint,
        aggregates: Aggregates,
        options: ShipperOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._checkpoint = checkpoint
        self._aggregates = aggregates
        self._options = options
        self._clock = clock
        self.pending_runs = checkpoint.outbox_size()
        self._failing = False

    async def ship_once(self) -> int:
        """Export one batch of due entries; returns how many runs went out."""
        now = int(self._clock() * NS_PER_S)
        entries = self._checkpoint.outbox_due(now, self._options.batch_runs)
        if not entries:
            return 0
        abandoned: list[str] = []
        queued: dict[str, OutboxEntry] = {}
        for entry in entries:
            try:
                spans = [span_from_dict(d) for d in json.loads(entry.spans_json)]
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                log.error("run %s: stored spans unreadable (%s); dropping them", entry.run_id, exc)
                self._aggregates.inc(m.SPANS_EXPORTED, (DROPPED,), entry.span_count)
                abandoned.append(entry.run_id)
                continue
            if self._sink.submit(spans, key=entry.run_id):
                queued[entry.run_id] = entry
            else:  # larger than the whole queue: it never will fit (counted as dropped)
                log.warning("run %s: %d spans exceed the export queue", entry.run_id, len(spans))
                abandoned.append(entry.run_id)
        report = await self._sink.flush()
        retry = []
        for run_id in report.failed:
            attempts = queued[run_id].attempts + 1
            backoff = min(self._options.backoff_ns * 2 ** min(attempts - 1, 20), _MAX_BACKOFF_NS)
            retry.append((run_id, attempts, now + backoff))
        dropped = self._checkpoint.outbox_settle(
            done=[*report.exported, *abandoned],
            retry=retry,
            max_entries=self._options.max_pending_runs,
        )
        if dropped:
            log.warning("span outbox full: dropped the oldest %d spans", dropped)
            self._aggregates.inc(m.SPANS_EXPORTED, (DROPPED,), dropped)
        self.pending_runs = self._checkpoint.outbox_size()
        self._log_outcome(report.ok)
        return len(report.exported)

    async def run(self, stop: asyncio.Event) -> None:
        """Ship until `stop` is set; a batch goes out right away while entries are due."""
        while not stop.is_set():
            try:
                shipped = await self.ship_once()
            except Exception:  # a tracing bug must never take the exporter down
                log.exception("span shipping failed; retrying")
                shipped = 0
            delay = 0.001 if shipped >= self._options.batch_runs else self._options.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    def _log_outcome(self, ok: bool) -> None:
        # One line when export starts failing and one when it recovers: no log storm.
        if not ok and not self._failing:
            log.warning("span export failing; %d runs' spans wait in the outbox", self.pending_runs)
        elif ok and self._failing:
            log.info("span export recovered")
        self._failing = not ok
