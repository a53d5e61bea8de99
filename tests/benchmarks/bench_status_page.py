"""What the status page costs with many agents: render time and an hour of samples' memory.

    python -m tests.benchmarks.bench_status_page

500 agents (the default label cap) with 8 outcomes each and 20 error types, a snapshot
published every 2 s for an hour (the demo's pace), then the page rendered 50 times.
"""

from __future__ import annotations

import time
import tracemalloc

from exporter.core.views import OpenRunView
from exporter.metrics.snapshot import Snapshot
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.web.status import StatusPage

AGENTS = 500
OUTCOMES = [("completed", f"reason_{i}") for i in range(6)] + [
    ("failed", "llm_api_error"),
    ("cancelled", "cancelled"),
]


def snapshot(step: int) -> Snapshot:
    aggregates = Aggregates()
    for agent in range(AGENTS):
        label = f"agent-{agent:036d}"
        for status, reason in OUTCOMES:
            aggregates.inc(m.RUNS_FINISHED, (label, status, reason), step + agent)
        aggregates.inc(m.RUNS_FAILED, (label, f"error_{agent % 20}"), step)
    runs = tuple(OpenRunView(f"agent-{i:036d}", "running", 0, i % 7 == 0) for i in range(200))
    names = tuple((f"agent-{i:036d}", f"name-{i}") for i in range(AGENTS))
    return Snapshot(aggregates=aggregates, open_runs=runs, agent_info=names)


def main() -> None:
    clock = [1_800_000_000.0]
    page = StatusPage(clock=lambda: clock[0])
    snapshots = [snapshot(step) for step in range(4)]
    tracemalloc.start()
    publish_s = 0.0
    for cycle in range(1800):
        clock[0] += 2
        started = time.perf_counter()
        page.publish(snapshots[cycle % 4])
        publish_s += time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    for _ in range(50):
        body = page.render()
    render_s = (time.perf_counter() - started) / 50
    print(f"publish: {publish_s / 1800 * 1000:.2f} ms per snapshot ({AGENTS} agents)")
    print(f"history: {current / 1e6:.1f} MB held after an hour of samples (peak {peak / 1e6:.1f})")
    print(f"render:  {render_s * 1000:.1f} ms per page, {len(body) / 1000:.0f} kB")


if __name__ == "__main__":
    main()
