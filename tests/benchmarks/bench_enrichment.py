"""Enrichment throughput: backfill N runs with /usage, /steps and /metrics all on.

    python -m tests.benchmarks.bench_enrichment [--runs 20000]

Prints enriched runs/s and requests/s at concurrency 1, 8 and 32 without a rate cap,
and at 8 with the default cap (50 requests/s). Target (issue #3): ≥ 2,000 enriched
runs/s without a cap.
"""

from __future__ import annotations

import argparse
import time

from tests.benchmarks.bench_backfill import SPACING_S, samples, start_exporter, start_fake


def run_once(runs: int, concurrency: int, rate_limit: float) -> tuple[float, float]:
    fake, base_url = start_fake(runs)
    exporter, url = start_exporter(
        base_url,
        f"--backfill={int(runs * SPACING_S) + 3600}s",
        f"--enrich.concurrency={concurrency}",
        f"--letta.rate-limit={rate_limit}",
    )
    try:
        started = time.monotonic()
        while samples(url).get("letta_runs_finished_total", 0.0) < runs:
            if time.monotonic() - started > 1800:
                raise RuntimeError("enrichment too slow")
            time.sleep(0.2)
        seconds = time.monotonic() - started
        requests = samples(url).get("letta_exporter_api_requests_total", 0.0)
        return runs / seconds, requests / seconds
    finally:
        exporter.terminate()
        exporter.wait(30)
        fake.terminate()
        fake.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'concurrency':>11} {'cap req/s':>9} {'runs/s':>8} {'requests/s':>10}")
    for concurrency, cap in ((1, 0.0), (8, 0.0), (32, 0.0), (8, 50.0)):
        runs = args.runs if cap == 0 else min(args.runs, 500)
        rate, requests = run_once(runs, concurrency, cap)
        print(f"{concurrency:>11} {cap or '-':>9} {rate:>8.0f} {requests:>10.0f}")


if __name__ == "__main__":
    main()
