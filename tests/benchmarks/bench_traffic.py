"""What the exporter sends to a Letta that fails or throttles (issue #26), in real time.

    python -m tests.benchmarks.bench_traffic [--only errors|noise|limit] [--traffic-s 45]

The real exporter process against the fake Letta API (tests/fake_letta):

- **errors**: default flags (15 s interval, 50 requests/s, 3 retries), a server that
  answers every request 401, 403 or 500 for 20 s: the requests it got. And connection
  refused after a good poll: the polls and connection attempts in 20 s. Targets: at most
  8 (401/403), at most 20 (500).
- **noise**: 2.5 % of answers 429 (`Retry-After: 1`) and 2.5 % 503 at random, runs
  finishing at 20/s for `--traffic-s`, `--poll.interval=1s --letta.rate-limit=0`: the
  requests/s the server answered, finished runs lost and doubled 60 s after the traffic
  ended, the counting lag then. Target: 0 lost, 0 doubled.
- **clean**: the same traffic, no fault: the requests per finished run to compare
  with (`PYTHONPATH=<other checkout>` runs another version's exporter).
- **limit**: the same traffic against a server that answers 429 above 30 requests/s:
  requests/s sent and accepted over the traffic (mean, and the slowest and fastest
  5-second stretch after the first 10 s), lost and doubled 60 s after. Target: held
  within ±20 % of 30, nothing lost. `--burst` sizes the server's bucket (default one
  request, the harshest: any two requests closer than 1/30 s, one is 429).

The rate in force is printed each second under load; `BENCH_DEBUG=1` runs the exporter
at debug level and prints the pace's cuts.

Measured (2 shared cores, 2026-12-05): 401 and 403: 2 requests, 500: 7, connection
refused after a good poll: 4 attempts (one cycle) in 20 s; noise: 0 lost, 0 doubled,
2.25 requests per run (clean: 2.12, as before this change); limit: rate in force 27-30
from 9 s after the first 429s, 27.3 sent/s and 24.8 accepted/s, 0 lost, 0 doubled.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected

DEFAULTS = ["--log.level=info"]
if __import__("os").environ.get("BENCH_DEBUG"):
    DEFAULTS = ["--log.level=debug"]  # every other flag at its default
AGENTS = [f"agent-{i}" for i in range(4)]
BURST = 1.0  # the limit's bucket, in requests (--burst)


def start(fake: FakeLetta, state: Path, *flags: str) -> Exporter:
    proc = Exporter(fake.base_url, state)
    proc.args = [*DEFAULTS, *flags]  # not the harness's fast flags
    return proc.start()


def errors() -> None:
    print("answer to everything    requests in 20 s")
    for status in (401, 403, 500):
        with tempfile.TemporaryDirectory() as tmp, FakeLetta() as fake:
            fake.answer_everything(status)
            proc = start(fake, Path(tmp) / "s.sqlite")
            try:
                began = len(fake.requests)
                time.sleep(20)
                print(f"{status:<23} {len(fake.requests) - began:>8}")
            finally:
                proc.kill()
    with tempfile.TemporaryDirectory() as tmp, FakeLetta() as fake:
        proc = start(fake, Path(tmp) / "s.sqlite")
        try:
            proc.wait_ready()
            polls = proc.value("letta_exporter_polls_total")
            fake.stop()
            time.sleep(20)
            attempts = proc.value("letta_exporter_api_requests_total", code="connect_error")
            cycles = proc.value("letta_exporter_polls_total") - polls
            print(f"{'connection refused':<23} {attempts:>8.0f}  ({cycles:.0f} poll cycles)")
            line = next((x for x in proc.logs if "nothing answers" in x), "(no line)")
            print(f"  log: {line.strip()}")
        finally:
            proc.kill()


def traffic(
    fake: FakeLetta, seconds: float, rng: random.Random, proc: Exporter
) -> list[tuple[float, int, int]]:
    """20 finished runs/s for `seconds`; (time, requests, 429s) sampled each second."""
    samples = []
    rates: list[float] = []
    started = time.monotonic()
    tick = 0
    while time.monotonic() - started < seconds:
        fake.finish_burst(2, AGENTS, shared_fraction=0.3, rng=rng)
        tick += 1
        if tick % 10 == 0:
            answered = fake.requests
            throttled = sum(1 for r in answered if r[3] == 429)
            samples.append((time.monotonic(), len(answered), throttled))
            rates.append(proc.value("letta_exporter_request_rate_limit"))
        time.sleep(max(0.0, started + tick * 0.1 - time.monotonic()))
    print("  rate in force each second:", " ".join(f"{r:.0f}" for r in rates))
    return samples


def lost_doubled(fake: FakeLetta, proc: Exporter) -> tuple[int, int]:
    truth = expected(fake.truth())
    seen = proc.finished()
    lost = sum((truth - seen).values())
    doubled = sum((seen - truth).values())
    return lost, doubled


def stretches(samples: list[tuple[float, int, int]]) -> tuple[float, float, float, float]:
    """Mean sent/s and accepted/s after the first 10 s; slowest and fastest 5 s of sent."""
    later = samples[10:]
    if len(later) < 6:
        return 0.0, 0.0, 0.0, 0.0
    span = later[-1][0] - later[0][0]
    sent = (later[-1][1] - later[0][1]) / span
    accepted = sent - (later[-1][2] - later[0][2]) / span
    fives = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(later, later[5:], strict=False)]
    return sent, accepted, min(fives), max(fives)


def loaded(case: str, traffic_s: float) -> None:
    rng = random.Random(26)
    with tempfile.TemporaryDirectory() as tmp, FakeLetta() as fake:
        proc = start(fake, Path(tmp) / "s.sqlite", "--poll.interval=1s", "--letta.rate-limit=0")
        try:
            proc.wait_ready()
            if case == "noise":
                fake.answer_at_random(429, 0.025, retry_after="1", seed=26)
                fake.answer_at_random(503, 0.025, seed=26)
            elif case == "limit":
                fake.set_request_budget(30.0, burst=BURST)
            samples = traffic(fake, traffic_s, rng, proc)
            sent, accepted, low, high = stretches(samples)
            runs = sum(fake.truth().values())
            time.sleep(60)
            lost, doubled = lost_doubled(fake, proc)
            lag = proc.value("letta_exporter_counting_lag_seconds")
            requests = len(fake.requests)
            print(
                f"{case}: {runs} runs in {traffic_s:g} s; sent {sent:.1f}/s (5 s stretches "
                f"{low:.1f}-{high:.1f}), accepted {accepted:.1f}/s; 60 s after: lost {lost}, "
                f"doubled {doubled}, counting lag {lag:.1f} s; {requests} requests, "
                f"{requests / max(runs, 1):.2f} per run"
            )
        finally:
            proc.kill()
            if DEFAULTS == ["--log.level=debug"]:
                print("\n".join(x for x in proc.logs if "pacing" in x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("errors", "noise", "limit", "clean"))
    parser.add_argument("--traffic-s", type=float, default=45.0)
    parser.add_argument("--burst", type=float, default=1.0, help="the limit's bucket")
    args = parser.parse_args()
    global BURST
    BURST = args.burst
    if args.only in (None, "errors"):
        errors()
    for case in ("noise", "limit", "clean"):
        if args.only in (None, case):
            loaded(case, args.traffic_s)


if __name__ == "__main__":
    main()
