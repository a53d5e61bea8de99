"""Enrichment throughput: backfill N runs with /usage, /steps and /metrics all on.

    python -m tests.benchmarks.bench_enrichment [--runs 20000]

Prints enriched runs/s and requests/s at concurrency 1, 8 and 32 without a rate cap,
and at 8 with the default cap (50 requests/s), plus the CPU time each process spent per
request: the fake runs in its own process, so the two columns show which side limits
the rate (a side near one core's worth, 1e6 / requests/s µs, is the bottleneck).

The exporter is one asyncio process, so one core bounds it: the last column is the rate
its CPU per run would allow if it had a core to itself and the fake cost nothing
(1e6 / exporter CPU µs per run). Target (issue #3): ≥ 2,000 enriched runs/s without a cap,
which needs ≤ 500 µs of exporter CPU per run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import psutil

from tests.benchmarks.bench_backfill import SPACING_S, samples, start_exporter, start_fake


@dataclass
class Result:
    runs_per_s: float
    requests_per_s: float
    exporter_cpu_us: float  # per request
    fake_cpu_us: float  # per request

    @property
    def one_core_ceiling(self) -> float:
        """Runs/s the exporter's CPU per run allows on one core of its own."""
        per_run = self.exporter_cpu_us * self.requests_per_s / self.runs_per_s
        return 1e6 / per_run


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def run_once(runs: int, concurrency: int, rate_limit: float) -> Result:
    fake, base_url = start_fake(runs)
    exporter, url = start_exporter(
        base_url,
        f"--backfill={int(runs * SPACING_S) + 3600}s",
        f"--enrich.concurrency={concurrency}",
        f"--letta.rate-limit={rate_limit}",
    )
    try:
        procs = psutil.Process(exporter.pid), psutil.Process(fake.pid)
        # The fake's bulk load and both start-ups are not part of the measurement.
        cpu_before = [_cpu_s(p) for p in procs]
        started = time.monotonic()
        while samples(url).get("letta_runs_finished_total", 0.0) < runs:
            if time.monotonic() - started > 1800:
                raise RuntimeError("enrichment too slow")
            time.sleep(0.2)
        seconds = time.monotonic() - started
        exporter_cpu, fake_cpu = (_cpu_s(p) - c for p, c in zip(procs, cpu_before, strict=True))
        requests = samples(url).get("letta_exporter_api_requests_total", 0.0)
        per_request = 1e6 / max(requests, 1.0)
        return Result(
            runs / seconds, requests / seconds, exporter_cpu * per_request, fake_cpu * per_request
        )
    finally:
        exporter.terminate()
        exporter.wait(30)
        fake.terminate()
        fake.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"{'concurrency':>11} {'cap req/s':>9} {'runs/s':>8} {'requests/s':>10} "
        f"{'exporter CPU µs/req':>19} {'fake CPU µs/req':>15} {'one-core ceiling':>16}"
    )
    for concurrency, cap in ((1, 0.0), (8, 0.0), (32, 0.0), (8, 50.0)):
        runs = args.runs if cap == 0 else min(args.runs, 500)
        r = run_once(runs, concurrency, cap)
        # Under a cap the exporter mostly waits; its idle polling is not a cost per run.
        ceiling = "-" if cap else f"{r.one_core_ceiling:.0f}"
        print(
            f"{concurrency:>11} {cap or '-':>9} {r.runs_per_s:>8.0f} {r.requests_per_s:>10.0f} "
            f"{r.exporter_cpu_us:>19.0f} {r.fake_cpu_us:>15.0f} {ceiling:>16}",
            flush=True,
        )


if __name__ == "__main__":
    main()
