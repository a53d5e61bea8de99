"""The last hour of the exporter's own counters, sampled from the snapshots it publishes,
for the status page's "last hour" numbers and charts. Memory is bounded: one sample per
`SAMPLE_EVERY_S`, an hour of them."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Final

from exporter.metrics import catalogue as m
from exporter.metrics.snapshot import Snapshot

HOUR_S: Final = 3600.0
SAMPLE_EVERY_S: Final = 10.0
_KEPT: Final = int(HOUR_S / SAMPLE_EVERY_S) + 2


@dataclass(frozen=True, slots=True)
class Totals:
    """The run counters and gauges at one moment (counters as /metrics shows them)."""

    at_s: float
    finished: Counter[tuple[str, str, str]]
    """(agent, status, stop_reason) -> runs."""
    failed: Counter[tuple[str, str]]
    """(agent, error_type) -> runs."""
    in_progress: int
    stale: int
    awaiting: int

    def finished_by_status(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, status, _), value in self.finished.items():
            out[status] += int(value)
        return out


def totals_of(snapshot: Snapshot, at_s: float) -> Totals:
    """The counters and gauges of `snapshot`, labelled as on /metrics."""
    agg = snapshot.aggregates
    finished: Counter[tuple[str, str, str]] = Counter()
    for (agent, status, stop_reason), value in agg.series(m.RUNS_FINISHED):
        finished[(agent, status, stop_reason)] += int(value)
    failed: Counter[tuple[str, str]] = Counter()
    for (agent, error_type), value in agg.series(m.RUNS_FAILED):
        failed[(agent, error_type)] += int(value)
    stale = sum(1 for run in snapshot.open_runs if run.stale)
    return Totals(
        at_s=at_s,
        finished=finished,
        failed=failed,
        in_progress=len(snapshot.open_runs) - stale,
        stale=stale,
        awaiting=len(snapshot.approval_waits),
    )


class History:
    """Samples of `Totals`, one every `SAMPLE_EVERY_S` over the last hour, and the latest."""

    def __init__(self) -> None:
        self._spaced: deque[Totals] = deque(maxlen=_KEPT)
        self._latest: Totals | None = None
        self._lock = threading.Lock()

    def record(self, totals: Totals) -> None:
        """Keep `totals` as the latest sample, and as a spaced one once the interval passed."""
        with self._lock:
            self._latest = totals
            if not self._spaced or totals.at_s - self._spaced[-1].at_s >= SAMPLE_EVERY_S:
                self._spaced.append(totals)

    def samples(self) -> list[Totals]:
        """The samples of the last hour (and the one just before it), oldest first."""
        with self._lock:
            samples = list(self._spaced)
            if self._latest is not None and self._latest is not samples[-1]:
                samples.append(self._latest)
            return samples

    def at(self, at_s: float) -> Totals | None:
        """The last sample taken at or before `at_s`, else None."""
        found = None
        for sample in self.samples():
            if sample.at_s > at_s:
                break
            found = sample
        return found
