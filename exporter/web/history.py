"""The last hour of the exporter's own counters, sampled from the snapshots it publishes,
for the status page's "last hour" numbers and charts. Memory is bounded: one sample per
`SAMPLE_EVERY_S`, an hour of them."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Final

from exporter.metrics.snapshot import Snapshot
from exporter.series import catalogue as m

HOUR_S: Final = 3600.0
SAMPLE_EVERY_S: Final = 30.0
_KEPT: Final = int(HOUR_S / SAMPLE_EVERY_S) + 2


@dataclass(frozen=True, slots=True)
class Totals:
    """The run counters (summed as the page shows them) and gauges at one moment.

    Kept summed by outcome, agent and error type, not per series, so an hour of samples
    stays small with many agents."""

    at_s: float
    finished: Counter[tuple[str, str]]
    """(status, stop_reason) -> runs."""
    finished_by_agent: Counter[str]
    failed: Counter[str]
    """error_type -> failing runs."""
    failed_by_agent: Counter[str]
    in_progress: int
    stale: int
    awaiting: int

    def finished_by_status(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (status, _), value in self.finished.items():
            out[status] += value
        return out


def totals_of(snapshot: Snapshot, at_s: float) -> Totals:
    """The counters and gauges of `snapshot`, labelled as on /metrics."""
    agg = snapshot.aggregates
    finished: Counter[tuple[str, str]] = Counter()
    finished_by_agent: Counter[str] = Counter()
    for (agent, status, stop_reason), value in agg.series(m.RUNS_FINISHED):
        finished[(status, stop_reason)] += int(value)
        finished_by_agent[agent] += int(value)
    failed: Counter[str] = Counter()
    failed_by_agent: Counter[str] = Counter()
    for (agent, error_type), value in agg.series(m.RUNS_FAILED):
        failed[error_type] += int(value)
        failed_by_agent[agent] += int(value)
    stale = sum(1 for run in snapshot.open_runs if run.stale)
    return Totals(
        at_s=at_s,
        finished=finished,
        finished_by_agent=finished_by_agent,
        failed=failed,
        failed_by_agent=failed_by_agent,
        in_progress=len(snapshot.open_runs) - stale,
        stale=stale,
        awaiting=len(snapshot.approval_waits),
    )


class History:
    """Samples of `Totals`, one every `SAMPLE_EVERY_S`, over the last hour."""

    def __init__(self) -> None:
        self._samples: deque[Totals] = deque(maxlen=_KEPT)
        self._lock = threading.Lock()

    def due(self, at_s: float) -> bool:
        """Whether a sample taken at `at_s` would be kept (so others need not make one)."""
        with self._lock:
            return not self._samples or at_s - self._samples[-1].at_s >= SAMPLE_EVERY_S

    def record(self, totals: Totals) -> None:
        """Keep `totals` if it is due."""
        with self._lock:
            if not self._samples or totals.at_s - self._samples[-1].at_s >= SAMPLE_EVERY_S:
                self._samples.append(totals)

    def samples(self) -> list[Totals]:
        """The samples of the last hour (and the one just before it), oldest first."""
        with self._lock:
            return list(self._samples)

    def at(self, at_s: float) -> Totals | None:
        """The last sample taken at or before `at_s`, else None."""
        found = None
        for sample in self.samples():
            if sample.at_s > at_s:
                break
            found = sample
        return found
