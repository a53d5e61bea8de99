"""Backfill benchmark: the exporter walks N runs from the fake Letta API over loopback.

Run on demand (not part of the test suite):

    python -m tests.benchmarks.bench_backfill            # 10k and 1M runs
    python -m tests.benchmarks.bench_backfill --runs 10000

Prints runs/s, exporter CPU µs per run next to the cost of pydantic parsing the same
pages (measured in this run), peak RSS of the exporter, and the requests an idle cycle
makes. Targets (issue #2): CPU/run ≤ 3× parse cost; RSS at 1M ≤ 1.1 × RSS at 10k and
≤ 150 MB; idle cycle ≤ 2 requests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter

from exporter.letta.models import Run

# Runs spread over ~29 days (2.5 s apart): a realistic history, so the exporter's
# lookback window holds about a hundred runs, not the whole backfill.
SPACING_S = 2.5


@dataclass
class Result:
    runs: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    parse_us_per_run: float
    idle_requests_per_cycle: float

    @property
    def cpu_us_per_run(self) -> float:
        return self.cpu_s / self.runs * 1e6


def start_fake(runs: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_letta",
            "--bulk",
            str(runs),
            "--spacing-s",
            str(SPACING_S),
            "--seed",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        raise RuntimeError(f"fake did not start: {line!r}")
    return proc, line.split()[1]


def samples(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def parse_cost_us_per_run(base_url: str, pages: int = 50, repeats: int = 5) -> float:
    """pydantic parsing cost of the exact pages the exporter reads, one page at a time
    and dropped after use as the exporter does; the best of `repeats` passes."""
    adapter = TypeAdapter(list[Run])
    bodies = []
    cursor = None
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(pages):
            params: dict[str, str | int] = {"order": "desc", "limit": 1000}
            if cursor:
                params["before"] = cursor
            body = client.get("/v1/runs/", params=params).content
            runs = adapter.validate_json(body)
            if not runs:
                break
            bodies.append(body)
            cursor = runs[-1].id
    best = float("inf")
    for _ in range(repeats):
        count = 0
        started = time.process_time()
        for body in bodies:
            count += len(adapter.validate_json(body))
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


def start_exporter(base_url: str, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """The exporter on a fresh state file and a free port; returns (process, its URL)."""
    state = Path(tempfile.mkdtemp()) / "state.sqlite"
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--letta.url={base_url}",
            f"--state.path={state}",
            "--web.listen-address=127.0.0.1:0",
            "--poll.interval=1s",
            "--log.level=info",  # the "listening on" line is logged at info
            *flags,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert exporter.stderr is not None
    port = None
    for line in exporter.stderr:
        if "listening on http://" in line:
            port = int(line.split("listening on http://")[1].split(",")[0].rsplit(":", 1)[1])
            break
    assert port is not None, "the exporter did not start"
    threading.Thread(target=exporter.stderr.read, daemon=True).start()  # keep draining
    return exporter, f"http://127.0.0.1:{port}"


def run_once(runs: int) -> Result:
    fake, base_url = start_fake(runs)
    exporter, url = start_exporter(
        base_url,
        "--backfill=60d",
        "--poll.max-pages=200",
        "--letta.rate-limit=0",
        # Discovery alone: enrichment has its own benchmark (bench_enrichment).
        "--enrich.usage=false",
        "--enrich.steps=false",
        "--enrich.metrics=false",
    )
    try:
        proc = psutil.Process(exporter.pid)
        cpu_start = proc.cpu_times()
        started = time.monotonic()
        while True:
            got = samples(url).get("letta_runs_finished_total", 0.0)
            if got >= runs:
                break
            if time.monotonic() - started > 3600:
                raise RuntimeError(f"backfill too slow: {got} of {runs}")
            time.sleep(0.2)
        seconds = time.monotonic() - started
        cpu_end = proc.cpu_times()
        cpu_s = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)
        peak_kb = _peak_rss_kb(exporter.pid)
        # Idle cycles: no new runs; count requests per poll over a few cycles.
        before = samples(url)
        time.sleep(5.5)
        after = samples(url)
        polls = after["letta_exporter_polls_total"] - before["letta_exporter_polls_total"]
        requests = (
            after["letta_exporter_api_requests_total"] - before["letta_exporter_api_requests_total"]
        )
        parse = parse_cost_us_per_run(base_url)
        return Result(runs, seconds, cpu_s, peak_kb / 1024, parse, requests / max(polls, 1))
    finally:
        exporter.terminate()
        exporter.wait(30)
        fake.terminate()
        fake.wait(30)


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, action="append", help="repeatable; default 10k, 1M")
    sizes = parser.parse_args().runs or [10_000, 1_000_000]
    results = [run_once(n) for n in sizes]
    print(
        f"{'runs':>9} {'seconds':>8} {'runs/s':>8} {'cpu µs/run':>10} {'parse µs/run':>12} "
        f"{'ratio':>6} {'peak RSS MB':>11} {'idle req/cycle':>14}"
    )
    for r in results:
        print(
            f"{r.runs:>9} {r.seconds:>8.1f} {r.runs / r.seconds:>8.0f} {r.cpu_us_per_run:>10.1f} "
            f"{r.parse_us_per_run:>12.1f} {r.cpu_us_per_run / r.parse_us_per_run:>6.2f} "
            f"{r.peak_rss_mb:>11.1f} {r.idle_requests_per_cycle:>14.2f}"
        )
    if len(results) >= 2:
        small, big = results[0], results[-1]
        print(f"RSS {big.runs} / RSS {small.runs} = {big.peak_rss_mb / small.peak_rss_mb:.3f}")


if __name__ == "__main__":
    main()
