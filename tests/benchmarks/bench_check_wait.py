"""How gentle `check --wait` is: requests to Letta while runs stay open.

    python -m tests.benchmarks.bench_check_wait [--seconds 60] [--runs 1 20]

For each run count, `check --wait --timeout SECONDS` waits on that many runs that never
end (the fake in this process) and the requests it made are counted: in total, in the
first 10 s and in the last 10 s (the steady rate, after the back-off). A second pass
caps the rate with `--letta.rate-limit=2` to show the cap holds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from tests.fake_letta.fake import FakeLetta


def measure(runs: int, seconds: float, rate_limit: float) -> tuple[int, int, int]:
    """Requests made: all, in the first 10 s, in the last 10 s."""
    with FakeLetta() as fake:
        run_ids = [fake.create_run("agent-bench") for _ in range(runs)]
        args = [f"--run={run_id}" for run_id in run_ids]
        times: list[float] = []
        start = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "check",
                f"--letta.url={fake.base_url}",
                f"--letta.rate-limit={rate_limit:g}",
                f"--timeout={seconds:g}s",
                "--wait",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seen = 0
        while proc.poll() is None:
            time.sleep(0.05)
            count = len(fake.requests)
            times.extend([time.monotonic() - start] * (count - seen))
            seen = count
        end = time.monotonic() - start
    first = sum(1 for t in times if t <= 10)
    last = sum(1 for t in times if t >= end - 10)
    return len(times), first, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 20])
    options = parser.parse_args()
    print(f"{'runs':>5} {'cap/s':>6} {'requests':>9} {'first 10s':>10} {'last 10s':>9}")
    for rate_limit in (50.0, 2.0):
        for runs in options.runs:
            total, first, last = measure(runs, options.seconds, rate_limit)
            print(f"{runs:>5} {rate_limit:>6g} {total:>9} {first:>10} {last:>9}")


if __name__ == "__main__":
    main()
