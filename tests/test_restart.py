"""kill -9 the exporter again and again while runs keep arriving: nothing lost or doubled."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected

pytestmark = pytest.mark.e2e

OUTCOMES = [
    ("completed", "end_turn"),
    ("failed", "llm_api_error"),
    ("cancelled", "cancelled"),
    ("completed", "requires_approval"),
    ("failed", None),
]


def produce(fake: FakeLetta, stop: threading.Event, seed: int) -> None:
    """Runs arrive every few ms; some stay open for a while before they end."""
    rng = random.Random(seed)
    open_runs: list[tuple[float, str]] = []
    while not stop.is_set():
        run_id = fake.create_run(f"agent-{rng.randrange(4)}", background=rng.random() < 0.5)
        if rng.random() < 0.3:
            fake.update_run(run_id, status="running")
            open_runs.append((time.monotonic() + rng.uniform(0.2, 2.0), run_id))
        else:
            status, reason = rng.choice(OUTCOMES)
            fake.update_run(run_id, status=status, stop_reason=reason)
        now = time.monotonic()
        for due, pending in [item for item in open_runs if item[0] <= now]:
            status, reason = rng.choice(OUTCOMES)
            fake.update_run(pending, status=status, stop_reason=reason)
            open_runs.remove((due, pending))
        time.sleep(rng.uniform(0.002, 0.02))
    for _, pending in open_runs:
        fake.update_run(pending, status="completed", stop_reason="end_turn")


def counters(exporter: Exporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        key: value
        for key, value in exporter.samples().items()
        if key[0].endswith("_total") and key[0].startswith("letta_runs")
    }


def test_kill_9_mid_cycle_loses_nothing_and_counters_never_go_back(tmp_path: Path) -> None:
    rng = random.Random(7)
    state = tmp_path / "state.sqlite"
    with FakeLetta() as fake:
        # Slow every answer a little so a kill lands inside a cycle more often than not.
        fake.inject("timeout", delay=0.02, times=1_000_000, path_prefix="/v1/runs/")
        exporter = Exporter(fake.base_url, state, "--letta.page-size=20").start()
        exporter.wait_ready()
        stop = threading.Event()
        producer = threading.Thread(target=produce, args=(fake, stop, 11), daemon=True)
        producer.start()
        high_water: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        kills = 0
        try:
            for _ in range(5):
                time.sleep(rng.uniform(0.6, 1.6))
                seen = counters(exporter)
                for key, value in seen.items():
                    assert value >= high_water.get(key, 0.0), f"{key} went back"
                high_water.update(seen)
                exporter.kill()
                kills += 1
                exporter = Exporter(fake.base_url, state, "--letta.page-size=20").start()
                exporter.wait_ready()
                after = counters(exporter)
                for key, value in high_water.items():
                    assert after.get(key, 0.0) >= value, f"{key} reset by the restart"
            stop.set()
            producer.join(10)
            exporter.wait_for(
                lambda: exporter.finished() == expected(fake.truth()),
                timeout=60,
                what="totals after the restarts to equal the truth",
            )
        finally:
            stop.set()
            exporter.kill()
        assert kills == 5
        assert sum(fake.truth().values()) > 100


def test_runs_after_a_kill_on_a_server_that_had_none_are_counted(tmp_path: Path) -> None:
    # The first start committed cycles that saw no run (an empty Letta); the runs made
    # while the exporter was down are new, not history a first start skips.
    state = tmp_path / "s.sqlite"
    with FakeLetta() as fake:
        first = Exporter(fake.base_url, state).start()
        try:
            first.wait_ready()
        finally:
            first.kill()
        for i in range(30):
            run_id = fake.create_run(f"agent-{i % 3}")
            status, reason = OUTCOMES[i % len(OUTCOMES)]
            fake.update_run(run_id, status=status, stop_reason=reason)
        second = Exporter(fake.base_url, state).start()
        try:
            truth = expected(fake.truth())
            second.wait_for(lambda: second.finished() == truth, 30, "the runs to be counted")
        finally:
            second.kill()
