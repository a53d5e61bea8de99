"""How fast the fake Letta is where the tests lean on it: loads, pages, truths, faults, stop.

    python -m tests.benchmarks.bench_fake [--runs 100000 1000000]

For each size, a fake in this process bulk-loads that many runs, then the benchmark times
the first page of 1,000 runs (encoded) and the same page again (cached bytes, joined),
``token_truth`` + ``step_count_truth`` over every run, and the growth of the process's
peak memory. Then, once: how soon a client with a 0.3 s timeout gets its answer from a
``timeout`` and a ``hang`` fault, and how long ``stop()`` takes with two hung requests
and an idle keep-alive connection open. These numbers used to be limits inside the fake's
tests (5 s for 100,000 runs, 0.5 s for a cached page, 3 s for the truths, 2 s for the
faults and for stop()); the tests now keep only what the fake answers.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import httpx

from tests.fake_letta.fake import FakeLetta


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure_scale(runs: int) -> tuple[float, float, float, float, float]:
    """Seconds to bulk-load, serve a page, serve it again, count the truths; MiB grown."""
    rss_before = _peak_rss_mib()
    with FakeLetta() as fake, httpx.Client(base_url=fake.base_url, timeout=60.0) as http:
        started = time.perf_counter()
        fake.bulk_load(runs, agents=7, seed=1)
        load_s = time.perf_counter() - started
        timings = []
        for _ in range(2):  # the first encodes every run, the second joins cached bytes
            started = time.perf_counter()
            http.get("/v1/runs/", params={"limit": 1000}).raise_for_status()
            timings.append(time.perf_counter() - started)
        started = time.perf_counter()
        fake.token_truth()
        fake.step_count_truth()
        truth_s = time.perf_counter() - started
    return load_s, timings[0], timings[1], truth_s, _peak_rss_mib() - rss_before


def measure_fault(kind: str) -> float:
    """Seconds until a client with a 0.3 s timeout gives up on one faulty request."""
    with FakeLetta() as fake, httpx.Client(base_url=fake.base_url, timeout=0.3) as http:
        fake.inject(kind, delay=3.0 if kind == "timeout" else None)
        started = time.perf_counter()
        with contextlib.suppress(httpx.ReadTimeout):
            http.get("/v1/runs/")
        return time.perf_counter() - started


def measure_stop() -> float:
    """Seconds ``stop()`` takes with two hung requests and an idle keep-alive connection."""
    fake = FakeLetta().start()
    with contextlib.ExitStack() as stack:
        stack.callback(fake.stop)
        fake.inject("hang", times=2)
        for _ in range(2):
            hung = stack.enter_context(httpx.Client(base_url=fake.base_url, timeout=0.2))
            with contextlib.suppress(httpx.ReadTimeout):
                hung.get("/v1/runs/")
        idle = stack.enter_context(httpx.Client(base_url=fake.base_url))
        idle.get("/v1/health/").raise_for_status()
        started = time.perf_counter()
        fake.stop()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[100_000])
    options = parser.parse_args()
    print(f"{'runs':>9} {'load s':>7} {'page s':>7} {'cached s':>9} {'truths s':>9} {'+MiB':>6}")
    for runs in options.runs:
        load_s, page_s, cached_s, truth_s, grown = measure_scale(runs)
        print(
            f"{runs:>9,} {load_s:>7.2f} {page_s:>7.3f} {cached_s:>9.3f} {truth_s:>9.2f}"
            f" {grown:>6.0f}"
        )
    for kind in ("timeout", "hang"):
        print(f"client gave up on a {kind!r} fault after {measure_fault(kind):.2f} s")
    print(f"stop() with 2 hung requests and an idle connection: {measure_stop():.2f} s")


if __name__ == "__main__":
    main()
