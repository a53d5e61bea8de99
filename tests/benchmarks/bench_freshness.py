"""Freshness benchmark: delay from a run's completed_at to its count on /metrics.

Run on demand (not part of the test suite):

    python -m tests.benchmarks.bench_freshness                  # default and 1s interval
    python -m tests.benchmarks.bench_freshness --interval 1s --steady-s 30

For each poll interval (the default, 15 s, and 1 s; every other flag at its default) it
measures two phases against the fake Letta API (cursors relative to the sort order that
silently ignore unknown cursors, the case issue #12 is about):

- **steady**: `--rate` finished runs/s for `--steady-s` seconds;
- **kill -9**: a 4,000-run burst (400 runs/s, 30 % of each burst sharing one
  timestamp); the exporter is `kill -9`ed half-way through and restarted when the burst
  ends. It prints when the count was exact again and where that time went: restart,
  the walk down to where the killed process left off, enrichment (requests per run under
  `--letta.rate-limit`), the grace period.

Delays are p50/p95/p99 over the runs of the phase. /metrics is scraped every 100 ms and
runs are assumed to be counted in the order they finished (the k-th finished run is
counted when the total reaches k), which is how the exporter counts a burst.
Target (issue #12) at steady load: p99 ≤ poll interval + grace period + 2 s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.durations import parse_duration
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter

AGENTS = [f"agent-{i}" for i in range(8)]
GRACE_S = 5.0  # --runs.grace-period default
RATE_LIMIT = 50.0  # --letta.rate-limit default
BURST_RUNS = 4000
BURST_RATE = 400  # runs/s


@dataclass
class Scrapes:
    """Counter samples of the running exporter, taken every 100 ms in a thread."""

    exporter: Exporter | None = None
    points: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def loop(self) -> None:
        while not self.stop.wait(0.1):
            exporter = self.exporter
            if exporter is None or exporter.port is None:
                continue
            try:
                text = httpx.get(exporter.url + "/metrics", timeout=2).text
            except httpx.HTTPError:
                continue
            self.points.append((time.time(), _totals(text)))

    def first_time(self, name: str, at_least: float, since: float = 0.0) -> float | None:
        for moment, values in self.points:
            if moment >= since and values.get(name, 0.0) >= at_least:
                return moment
        return None


def _totals(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if sample.name == "letta_exporter_api_requests_total":
                key = f"{sample.name}:{sample.labels['endpoint']}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


EXTRA_FLAGS: list[str] = []


def exporter(fake: FakeLetta, state: Path, interval: str) -> Exporter:
    proc = Exporter(fake.base_url, state)
    proc.args = [f"--poll.interval={interval}", "--log.level=info", *EXTRA_FLAGS]
    return proc


@contextmanager
def scraping() -> Iterator[Scrapes]:
    scrapes = Scrapes()
    thread = threading.Thread(target=scrapes.loop, daemon=True)
    thread.start()
    try:
        yield scrapes
    finally:
        scrapes.stop.set()
        thread.join(5)


def traffic(fake: FakeLetta, runs: int, rate: float, rng: random.Random) -> list[float]:
    """`runs` finished runs at `rate` runs/s in ticks of at least 0.1 s; their completion
    times."""
    tick_s = max(0.1, 1 / rate)
    per_tick = max(1, round(rate * tick_s))
    finished: list[float] = []
    started = time.monotonic()
    tick = 0
    while len(finished) < runs:
        count = min(per_tick, runs - len(finished))
        fake.finish_burst(count, AGENTS, shared_fraction=0.3, rng=rng)
        finished += [time.time()] * count
        tick += 1
        time.sleep(max(0.0, started + tick * tick_s - time.monotonic()))
    return finished


def delays(scrapes: Scrapes, finished: list[float], base: float) -> list[float]:
    """Per run: first scrape whose total counts it (in finishing order) minus finish."""
    out = []
    for k, done in enumerate(sorted(finished), start=1):
        seen = scrapes.first_time("letta_runs_finished_total", base + k, since=done)
        if seen is None:
            raise RuntimeError(f"run {k} of {len(finished)} was never counted")
        out.append(seen - done)
    return out


def percentiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49]:6.2f} s  p95 {q[94]:6.2f} s  p99 {q[98]:6.2f} s  (n={len(values)})"


def wait_for(scrapes: Scrapes, name: str, at_least: float, timeout: float) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        moment = scrapes.first_time(name, at_least)
        if moment is not None:
            return moment
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not reach {at_least} in {timeout} s")


def steady(interval: str, rate: float, seconds: float) -> None:
    rng = random.Random(1)
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeLetta(semantics="relative", unknown_cursor="ignore") as fake,
        scraping() as scrapes,
    ):
        proc = exporter(fake, Path(tmp) / "s.sqlite", interval).start()
        scrapes.exporter = proc
        try:
            proc.wait_ready()
            finished = traffic(fake, round(rate * seconds), rate, rng)
            wait_for(scrapes, "letta_runs_finished_total", len(finished), 300)
            result = percentiles(delays(scrapes, finished, 0))
            print(f"  steady {rate:g} runs/s for {seconds:g} s: {result}")
        finally:
            proc.kill()


def after_kill(interval: str, rate_limit: float) -> None:
    rng = random.Random(2)
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeLetta(semantics="relative", unknown_cursor="ignore") as fake,
        scraping() as scrapes,
    ):
        state = Path(tmp) / "s.sqlite"
        first = exporter(fake, state, interval).start()
        scrapes.exporter = first
        first.wait_ready()
        finished = traffic(fake, BURST_RUNS // 2, BURST_RATE, rng)
        first.kill()
        killed_at = time.time()
        scrapes.exporter = None
        counted_before = max(v.get("letta_runs_finished_total", 0) for _, v in scrapes.points)
        before = scrapes.points[-1][1]
        finished += traffic(fake, BURST_RUNS - len(finished), BURST_RATE, rng)
        restart = time.time()
        second = exporter(fake, state, interval).start()
        scrapes.exporter = second
        try:
            exact = wait_for(scrapes, "letta_runs_finished_total", BURST_RUNS, 900)
            report(scrapes, before, finished, counted_before, killed_at, restart, exact, rate_limit)
        finally:
            second.kill()


def report(
    scrapes: Scrapes,
    before: dict[str, float],
    finished: list[float],
    counted_before: float,
    killed_at: float,
    restart: float,
    exact: float,
    rate_limit: float,
) -> None:
    """Where the catch-up time went: restart, cycles, requests under the rate limit."""
    cycles = [
        values["letta_exporter_last_poll_success_timestamp_seconds"]
        for moment, values in scrapes.points
        if values.get("letta_exporter_last_poll_success_timestamp_seconds", 0) > restart
    ]
    ends = sorted(set(cycles))
    after = scrapes.points[-1][1]

    def grown(*endpoints: str) -> float:
        key = "letta_exporter_api_requests_total:"
        return sum(after.get(key + e, 0) - before.get(key + e, 0) for e in endpoints)

    lists = grown("runs_list", "runs_active")
    enrich = grown("run_steps", "run_metrics", "run_usage", "run")
    uncounted = BURST_RUNS - counted_before
    print(f"  kill -9 during a {BURST_RUNS}-run burst at {BURST_RATE} runs/s:")
    print(f"    counted before the kill {counted_before:.0f}; down {restart - killed_at:.1f} s")
    print(
        "    after the restart, cycles ended at "
        + ", ".join(f"{end - restart:.1f}" for end in ends[:6])
        + f" s; count exact at {exact - restart:.1f} s"
    )
    print(
        f"    requests since the kill: {lists:.0f} list, {enrich:.0f} enrichment "
        f"({enrich / max(1.0, uncounted):.1f} per uncounted run): "
        + (
            f"{(lists + enrich) / rate_limit:.1f} s at --letta.rate-limit={rate_limit:g}"
            if rate_limit > 0
            else "no rate limit"
        )
    )
    print(f"    delay from completed_at to counted: {percentiles(delays(scrapes, finished, 0))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", action="append", help="repeatable; default 15s and 1s")
    parser.add_argument("--rate", type=float, default=10.0, help="steady runs/s")
    parser.add_argument("--steady-s", type=float, default=60.0)
    parser.add_argument("--flag", action="append", default=[], help="extra exporter flag")
    parser.add_argument("--kill-only", action="store_true", help="skip the steady phase")
    parser.add_argument("--steady-only", action="store_true", help="skip the kill -9 phase")
    args = parser.parse_args()
    EXTRA_FLAGS.extend(args.flag)
    rate_limit = next(
        (float(f.split("=", 1)[1]) for f in args.flag if f.startswith("--letta.rate-limit=")),
        RATE_LIMIT,
    )
    print(f"exporter flags: {' '.join(args.flag) or '(defaults)'}")
    for interval in args.interval or ["15s", "1s"]:
        seconds = parse_duration(interval)
        print(
            f"--poll.interval={interval} (target p99 at steady load ≤ {seconds + GRACE_S + 2:g} s)"
        )
        if not args.kill_only:
            steady(interval, args.rate, args.steady_s)
        if not args.steady_only:
            after_kill(interval, rate_limit)


if __name__ == "__main__":
    main()
