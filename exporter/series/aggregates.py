"""Counter and histogram values that survive restarts: in memory, with dirty tracking.

The checkpoint persists only the series touched since the last commit, and the
collector renders a copy taken after each commit, so a scrape never sees a value that a
crash could take back (counters never go down across a `kill -9`).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from exporter.series.catalogue import BY_NAME, Kind, MetricSpec

Labels = tuple[str, ...]


@dataclass(slots=True)
class Histogram:
    """Per-bucket (not cumulative) counts, the last one being +Inf, plus sum and count."""

    counts: list[int]
    sum: float = 0.0
    # Per bucket, the trace id and value of its latest sample that had one. In memory
    # only: an exemplar is a pointer to a recent trace, not a count to preserve.
    exemplars: list[tuple[str, float] | None] | None = None

    @property
    def count(self) -> int:
        """Observations in all buckets."""
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Counts as Prometheus wants them: each bucket includes the ones below it."""
        out: list[int] = []
        running = 0
        for value in self.counts:
            running += value
            out.append(running)
        return out


@dataclass(slots=True)
class Aggregates:
    """All persisted counter and histogram series, keyed by metric name and label values."""

    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, Histogram]] = field(default_factory=dict)
    _dirty: set[tuple[str, Labels]] = field(default_factory=set)

    def inc(self, spec: MetricSpec, labels: Labels = (), amount: float = 1.0) -> None:
        """Increase a counter series, creating it at zero first."""
        name = spec.name
        series = self.counters.get(name)
        if series is None:
            series = self.counters[name] = {}
        series[labels] = series.get(labels, 0.0) + amount
        self._dirty.add((name, labels))

    def add(
        self, spec: MetricSpec, labels: Labels, value: float, exemplar: str | None = None
    ) -> None:
        """Add one value to a histogram series; `exemplar` is its trace id, if any."""
        name = spec.name
        series = self.histograms.get(name)
        if series is None:
            series = self.histograms[name] = {}
        hist = series.get(labels)
        if hist is None:
            hist = series[labels] = Histogram([0] * (len(spec.buckets) + 1))
        # bisect_left: a value equal to a bound belongs to that bucket (le is inclusive).
        bucket = bisect.bisect_left(spec.buckets, value)
        hist.counts[bucket] += 1
        hist.sum += value
        if exemplar is not None:
            if hist.exemplars is None:
                hist.exemplars = [None] * len(hist.counts)
            hist.exemplars[bucket] = (exemplar, value)
        self._dirty.add((name, labels))

    def counter(self, spec: MetricSpec, labels: Labels = ()) -> float:
        """The current value of one counter series (0 when absent)."""
        return self.counters.get(spec.name, {}).get(labels, 0.0)

    def take_changes(self) -> list[tuple[str, Labels, str]]:
        """Series changed since the last call, serialised for the checkpoint."""
        out = []
        for name, labels in self._dirty:
            spec = BY_NAME[name]
            if spec.kind is Kind.HISTOGRAM:
                hist = self.histograms[name][labels]
                value = json.dumps([*hist.counts, hist.sum])
            else:
                value = repr(self.counters[name][labels])
            out.append((name, labels, value))
        self._dirty.clear()
        return out

    def load(self, rows: Iterable[tuple[str, Labels, str]]) -> None:
        """Restore series read from the checkpoint; unknown metric names are ignored."""
        for name, labels, value in rows:
            spec = BY_NAME.get(name)
            if spec is None:
                continue
            if spec.kind is Kind.HISTOGRAM:
                parts = json.loads(value)
                counts = [int(x) for x in parts[:-1]]
                if len(counts) != len(spec.buckets) + 1:
                    counts = _rebucket(counts, spec)
                self.histograms.setdefault(name, {})[labels] = Histogram(counts, float(parts[-1]))
            else:
                self.counters.setdefault(name, {})[labels] = float(value)

    def copy(self) -> Aggregates:
        """A deep copy for the collector to read while polling continues."""
        return Aggregates(
            counters={name: dict(series) for name, series in self.counters.items()},
            histograms={
                name: {
                    k: Histogram(list(h.counts), h.sum, list(h.exemplars) if h.exemplars else None)
                    for k, h in series.items()
                }
                for name, series in self.histograms.items()
            },
        )

    def series(self, spec: MetricSpec) -> Iterator[tuple[Labels, float]]:
        """Counter series of one metric, in a stable order."""
        yield from sorted(self.counters.get(spec.name, {}).items())


def _rebucket(counts: list[int], spec: MetricSpec) -> list[int]:
    # Buckets changed between versions: keep the samples, lose their placement (all in +Inf)
    # rather than lie about which bucket they fell in.
    fresh = [0] * (len(spec.buckets) + 1)
    fresh[-1] = sum(counts)
    return fresh
