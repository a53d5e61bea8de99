"""Renders the last published Snapshot as Prometheus metric families; no I/O in collect().

Example exposition:

    letta_runs_finished_total{agent="agent-…",status="failed",stop_reason="llm_api_error"} 3.0
    letta_run_duration_seconds_bucket{agent="agent-…",status="completed",le="5.0"} 12.0
    letta_runs_in_progress{agent="agent-…",status="running"} 2.0
    letta_up 1.0
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from exporter import __version__
from exporter.letta.errors import POLL_ERROR_REASONS
from exporter.metrics.snapshot import Snapshot
from exporter.series import catalogue as m
from exporter.series.catalogue import SPAN_RESULTS, Kind, MetricSpec

# Counters that exist from the first scrape, so `increase()` sees their first event
# instead of a series that appears already at 1.
_ZERO_INIT_COUNTERS: dict[MetricSpec, tuple[tuple[str, ...], ...]] = {
    m.POLLS: ((),),
    m.CURSOR_LOST: ((),),
    m.PAGINATION_STALLS: ((),),
    m.CURSOR_DIRECTION_SWITCHES: ((),),
    m.LATE_RUNS: ((),),
    m.CHANGED_AFTER_COUNT: ((),),
    m.POLL_ERRORS: tuple((reason,) for reason in POLL_ERROR_REASONS),
    m.SPANS_EXPORTED: tuple((result,) for result in SPAN_RESULTS),
}


class RunsCollector(Collector):
    """A prometheus_client collector over the latest Snapshot (swapped atomically)."""

    def __init__(self) -> None:
        self._snapshot = Snapshot()
        self._lock = threading.Lock()

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` what the next scrape shows."""
        with self._lock:
            self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        """Nothing: skips the registry's trial collect at registration."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Metric families of the current snapshot, in catalogue order."""
        with self._lock:
            snap = self._snapshot
        yield from self._persisted(snap)
        yield from self._live(snap)

    def _persisted(self, snap: Snapshot) -> Iterator[Metric]:
        agg = snap.aggregates
        for spec in m.ALL:
            if spec.kind is Kind.COUNTER and spec.name in _PERSISTED_COUNTERS:
                family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
                series = dict(agg.series(spec))
                for labels in _ZERO_INIT_COUNTERS.get(spec, ()):
                    series.setdefault(labels, 0.0)
                for labels, value in sorted(series.items()):
                    family.add_metric(list(labels), value)
                yield family
            elif spec.kind is Kind.HISTOGRAM:
                hist_family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
                for labels, hist in sorted(agg.histograms.get(spec.name, {}).items()):
                    bounds = [*(_le(b) for b in spec.buckets), "+Inf"]
                    buckets: list[Any] = list(zip(bounds, hist.cumulative(), strict=True))
                    for i, exemplar in enumerate(hist.exemplars or ()):
                        if exemplar is not None:
                            # Shown only in the OpenMetrics format, which scrapers negotiate.
                            trace_id, value = exemplar
                            buckets[i] = (*buckets[i], Exemplar({"trace_id": trace_id}, value))
                    hist_family.add_metric(list(labels), buckets=buckets, sum_value=hist.sum)
                yield hist_family

    def _live(self, snap: Snapshot) -> Iterator[Metric]:
        in_progress: Counter[tuple[str, str]] = Counter()
        stale: Counter[tuple[str, str]] = Counter()
        oldest: dict[str, int] = {}
        for run in snap.open_runs:
            key = (run.agent, run.status)
            if run.stale:
                stale[key] += 1
                continue
            in_progress[key] += 1
            if run.agent not in oldest or run.created_ns < oldest[run.agent]:
                oldest[run.agent] = run.created_ns
        yield _gauge(m.RUNS_IN_PROGRESS, {k: float(v) for k, v in in_progress.items()})
        yield _gauge(m.RUNS_STALE, {k: float(v) for k, v in stale.items()})
        yield _gauge(m.OLDEST_IN_PROGRESS, {(a,): ns / 1e9 for a, ns in oldest.items()})
        yield _gauge(m.AGENT_INFO, {info: 1.0 for info in snap.agent_info})
        waiting: Counter[tuple[str]] = Counter()
        waiting_since: dict[str, int] = {}
        for wait in snap.approval_waits:
            waiting[(wait.agent,)] += 1
            if wait.agent not in waiting_since or wait.since_ns < waiting_since[wait.agent]:
                waiting_since[wait.agent] = wait.since_ns
        yield _gauge(m.RUNS_AWAITING_APPROVAL, {k: float(v) for k, v in waiting.items()})
        yield _gauge(
            m.OLDEST_AWAITING_APPROVAL, {(a,): ns / 1e9 for a, ns in waiting_since.items()}
        )
        deadlocked = Counter((d.agent,) for d in snap.deadlocks)
        yield _gauge(m.THREADS_DEADLOCKED, {k: float(v) for k, v in deadlocked.items()})
        health = snap.health
        yield _gauge(m.UP, {(): 1.0 if health.up else 0.0})
        yield _gauge(m.BUILD_INFO, {(__version__,): 1.0})
        yield _gauge(
            m.LAST_POLL_SUCCESS,
            {(): health.last_success_s} if health.last_success_s is not None else {},
        )
        yield _gauge(m.POLL_DURATION, {(): health.poll_duration_s})
        yield _gauge(m.POLL_BACKOFF, {(): health.backoff_s})
        readings = snap.readings
        rate = readings.request_rate
        yield _gauge(m.REQUEST_RATE_LIMIT, {} if rate is None else {(): rate})
        yield _gauge(m.ENDPOINT_UP, {(name,): float(up) for name, up in readings.endpoints_up})
        yield _gauge(m.FOLLOWED_RUNS, {(): float(snap.followed)})
        yield _gauge(m.ENRICHMENT_BACKLOG, {(): float(snap.enrichment_backlog)})
        yield _gauge(m.BACKFILL_REMAINING, {(): snap.backfill_remaining_s})
        yield _gauge(m.SPANS_PENDING, {(): float(snap.spans_pending)})
        yield _gauge(
            m.LIST_CURSOR_INFO,
            {(p,): float(p == snap.cursor_param) for p in ("before", "after", "unknown")},
        )
        yield _gauge(m.COUNTING_LAG, {(): snap.counting_lag_s})
        yield _gauge(m.WEB_CONFIG_RELOAD_OK, {(): 1.0 if readings.web_config_ok else 0.0})
        verified = readings.scope_verified
        yield _gauge(m.SCOPE_VERIFIED, {} if verified is None else {(): float(verified)})


def _gauge(spec: MetricSpec, values: dict[tuple[str, ...], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family


def _le(bound: float) -> str:
    return repr(float(bound))


_PERSISTED_COUNTERS = frozenset(s.name for s in m.ALL if s.kind is Kind.COUNTER)
