"""Soak: millions of runs through one exporter on an accelerated clock; memory stays flat.

Run on demand (not part of the test suite):

    python -m tests.benchmarks.bench_soak                    # 10M runs
    python -m tests.benchmarks.bench_soak --runs 500000 --csv soak.csv

The exporter's real parts (client, poller, tracker, checkpoint, collector) run in a
process of their own, the fake Letta API in this one, on one shared virtual clock
(so the RSS sampled is the exporter's alone): each cycle moves the clock on by
`--cycle-minutes` and feeds the runs created in that stretch (finished ones in bulk,
plus runs that stay open across cycles and zombies that never end), so weeks of
traffic pass in minutes and open-run expiry, pruning and state-file growth all happen.
The fake forgets runs older than two cycles, so its own memory stays bounded too.
Enrichment and tracing are off: the soak is about the counting core (enrichment has
its own benchmark).

Samples RSS, runs the exporter follows, the state file's size and the time to render
`/metrics`, prints a table and writes them to a CSV. Target (issue #7): RSS after
warm-up (the first 10 % of runs) grows by at most 5 %.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import multiprocessing
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, generate_latest

from exporter.cli.client import client_from_settings
from exporter.cli.config import load_settings
from exporter.cli.wiring import tracker_options
from exporter.core.labels import CappedLabel
from exporter.core.tracker import Tracker
from exporter.metrics.collector import RunsCollector
from exporter.poll.cycle import Poller
from exporter.poll.options import PollOptions
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import Checkpoint
from tests.fake_letta.fake import FakeLetta

AGENTS = [f"agent-{i:03d}" for i in range(50)]
OPEN_PER_CYCLE = 20  # runs that stay running into the next cycle
ZOMBIES_PER_CYCLE = 2  # runs that never end (expire after --runs.forget-after)


@dataclass
class ExporterStats:
    """What the exporter process reports after each cycle."""

    runs_counted: int
    rss_mb: float
    followed: int
    records: int
    state_kb: float
    render_ms: float
    cycle_ms: float


@dataclass
class Sample(ExporterStats):
    """One row of the table and the CSV: the exporter's report and where the soak is."""

    cycle: int
    runs_fed: int
    virtual_days: float


def counted(agg: Aggregates) -> int:
    return int(sum(value for _, value in agg.series(m.RUNS_FINISHED)))


def state_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def exporter_process(conn: Connection, clock: Synchronized[float], base_url: str) -> None:
    """The exporter's parts in a process of their own, so its RSS is the exporter's alone.

    It runs one cycle per "cycle" message, on the virtual clock the soak moves.
    """
    asyncio.run(_exporter_loop(conn, clock, base_url))


async def _exporter_loop(conn: Connection, clock: Synchronized[float], base_url: str) -> None:
    cycle_s = float(conn.recv())
    settings = load_settings(
        {
            "enrich_usage": False,
            "enrich_steps": False,
            "enrich_metrics": False,
            # One virtual cycle back: each scan re-reads the last stretch, so runs that
            # ended in it are seen again after their grace period, as at real speed,
            # instead of being fetched one by one.
            "poll_lookback": cycle_s + 60.0,
            "letta_rate_limit": 0,
            "letta_timeout": 30.0,
            "base_url": base_url,
        }
    )
    state = Path(tempfile.mkdtemp(prefix="letta-soak-")) / "state.sqlite"
    aggregates = Aggregates()
    tracker = Tracker(tracker_options(settings), aggregates, CappedLabel("agent", 500))
    checkpoint = Checkpoint(state)
    client = client_from_settings(settings)
    collector = RunsCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    poller = Poller(
        client,
        tracker,
        checkpoint,
        PollOptions(page_size=1000, max_pages=10_000),
        publish=collector.publish,
        first_start=True,
        clock=lambda: clock.value,
    )
    process = psutil.Process()
    while conn.recv() == "cycle":
        started = time.perf_counter()
        await poller.cycle()
        cycle_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        generate_latest(registry)
        render_ms = (time.perf_counter() - started) * 1000
        conn.send(
            ExporterStats(
                runs_counted=counted(aggregates),
                rss_mb=process.memory_info().rss / 2**20,
                followed=tracker.runs.records.followed_count(),
                records=len(tracker.runs.records),
                state_kb=state_size(state) / 1024,
                render_ms=render_ms,
                cycle_ms=cycle_ms,
            )
        )
    await client.aclose()
    checkpoint.close()


def soak(runs: int, per_cycle: int, cycle_s: float, samples: int) -> list[Sample]:
    """Feed the fake stretch by stretch and let the exporter process cycle after each."""
    spawn = multiprocessing.get_context("spawn")
    clock = spawn.Value("d", time.time() - 400 * 86400.0)
    start = clock.value
    rng = random.Random(1)
    with FakeLetta(clock=lambda: clock.value) as fake:
        ours, theirs = spawn.Pipe()
        child = spawn.Process(target=exporter_process, args=(theirs, clock, fake.base_url))
        child.start()
        ours.send(cycle_s)

        def cycle() -> ExporterStats:
            ours.send("cycle")
            stats: ExporterStats = ours.recv()
            return stats

        cycle()  # first start: nothing to count yet
        out: list[Sample] = []
        open_runs: list[str] = []
        fed = n = 0
        every = max(1, runs // per_cycle // samples)
        while fed < runs:
            n += 1
            batch = min(per_cycle, runs - fed)
            # The stretch [t, t + cycle_s): finished runs in bulk, then open ones.
            fake.bulk_load(
                batch,
                agents=AGENTS,
                start=clock.value,
                spacing_s=cycle_s / (batch + OPEN_PER_CYCLE + ZOMBIES_PER_CYCLE + 1),
                duration_s=3.0,
                seed=n,
            )
            for run_id in open_runs:  # last stretch's open runs end now
                fake.update_run(run_id, status="completed", stop_reason="end_turn")
            fed += batch + len(open_runs)
            open_runs = []
            for i in range(OPEN_PER_CYCLE + ZOMBIES_PER_CYCLE):
                run_id = fake.create_run(
                    rng.choice(AGENTS), created_at=clock.value + cycle_s * (0.9 + i * 0.001)
                )
                fake.update_run(run_id, status="running")
                if i < OPEN_PER_CYCLE:
                    open_runs.append(run_id)
            clock.value += cycle_s
            fake.forget_before(clock.value - 2 * cycle_s)
            stats = cycle()
            if n % every == 0 or fed >= runs:
                days = (clock.value - start) / 86400
                out.append(Sample(**asdict(stats), cycle=n, runs_fed=fed, virtual_days=days))
                print_row(out[-1])
        ours.send("stop")
        child.join(30)
    return out


HEADER = (
    f"{'cycle':>6} {'fed':>10} {'counted':>10} {'days':>7} {'RSS MB':>7} "
    f"{'followed':>8} {'records':>8} {'state KB':>9} {'render ms':>9} {'cycle ms':>8}"
)


def print_row(s: Sample) -> None:
    print(
        f"{s.cycle:>6} {s.runs_fed:>10} {s.runs_counted:>10} {s.virtual_days:>7.1f} "
        f"{s.rss_mb:>7.1f} {s.followed:>8} {s.records:>8} {s.state_kb:>9.0f} "
        f"{s.render_ms:>9.1f} {s.cycle_ms:>8.0f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--per-cycle", type=int, default=20_000, help="runs fed per cycle")
    parser.add_argument("--cycle-minutes", type=float, default=30.0, help="virtual time/cycle")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--csv", type=Path, default=Path("soak.csv"))
    args = parser.parse_args()
    print(HEADER)
    wall = time.perf_counter()
    rows = soak(args.runs, args.per_cycle, args.cycle_minutes * 60, args.samples)
    wall = time.perf_counter() - wall
    with args.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    warm = next(r for r in rows if r.runs_fed >= args.runs * 0.1)
    last = rows[-1]
    growth = (last.rss_mb / warm.rss_mb - 1) * 100
    pending = last.runs_fed - last.runs_counted
    print(
        f"\n{last.runs_fed} runs fed, {last.runs_counted} counted, {last.virtual_days:.1f} "
        f"virtual days in {wall:.0f} s ({last.runs_fed / wall:.0f} runs/s); RSS after warm-up "
        f"{warm.rss_mb:.1f} MB -> {last.rss_mb:.1f} MB ({growth:+.1f} %, target <= +5 %); "
        f"CSV: {args.csv}"
    )
    if pending:
        print(f"runs fed but not counted yet: {pending} (the last cycle's settling runs)")
    return 0 if growth <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
