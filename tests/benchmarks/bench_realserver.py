"""What the exporter costs a real Letta 0.16.8 server, per finished run.

    python -m tests.benchmarks.bench_realserver [--rounds 2] [--poll-interval 15s]
        [--exporter-arg=--enrich.metrics=false ...]

Starts the real-server stack (tests/realserver), drives the contract workload `--rounds`
times with no exporter and measures the CPU Letta and Postgres spent running those runs
(a fake LLM answers instantly, so this is Letta's own work). Then starts the exporter with
`--backfill` over them, waits until it counted every run, and measures the CPU Letta and
Postgres spent answering it, minus what they burn idle over the same time (measured
first). Prints server CPU per run and per request, the share of the runs' own cost, and
the exporter's requests per run by endpoint.

CPU is read from /proc (psutil): the process itself, its live children, and the children
it already reaped (Postgres backends), so nothing that ran between two readings is lost.

Measured here (2 shared cores, load ~4; expect ±20 % between runs), main before issue
#27 → this branch, same machine, back to back: 4 rounds (112 runs) 2.05 → 1.07 requests
per run (`/steps` per run; tools from 2 `GET /v1/messages/` pages instead of 112
`/metrics`; one `GET /v1/steps/` probe, 400 on 0.16.8), Letta + Postgres CPU answering
the exporter 32.6 → 27.0 ms/run (-17 %); 2 rounds (56 runs) 2.11 → 1.12 and 1.14
requests per run, 43.8 → 31.8 and 35.2 ms/run (-20 to -27 %); 8 rounds (224 runs), three
pairs: 2.03 → 1.04 requests per run, 42.3 → 27.2, 44.4 → 35.9 and 36.5 → 29.3 ms/run
(-36, -19 and -20 %; -25 % on the means; bench_endpoint_cost, without the cycle around
it, gives -26 and -27 %). What is left is `/steps`
(~25 ms/run: Postgres reading a run's steps and Letta serialising them), which 0.16.8
cannot batch (its `GET /v1/steps/` answers 400 to every query); Letta Cloud serves it
(see bench_cloud_load). The fixed requests (list pages, agents, the probe, the walk's
end page) weigh less the more runs a backfill holds: 1 + ~8/N requests per run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from tests.harness import Exporter
from tests.realserver.stack import Stack, start_stack
from tests.realserver.workload import Workload, read_truth_of

IDLE_S = 20.0


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its live descendants and its reaped children."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def server_cpu_s(stack: Stack) -> dict[str, float]:
    pids = stack.pids()
    return {name: tree_cpu_s(pids[name]) for name in ("letta", "postgres")}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after}


def requests_by_endpoint(exporter: Exporter) -> Counter[str]:
    out: Counter[str] = Counter()
    for (name, labels), value in exporter.samples().items():
        if name == "letta_exporter_api_requests_total":
            out[dict(labels)["endpoint"]] += int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="workload rounds (~29 runs each)")
    parser.add_argument("--poll-interval", default="15s", help="the exporter's --poll.interval")
    parser.add_argument(
        "--exporter-arg",
        action="append",
        default=[],
        help="extra exporter flag, e.g. --exporter-arg=--enrich.metrics=false (repeatable)",
    )
    args = parser.parse_args()

    stack = start_stack()
    try:
        print(f"stack up in {stack.started_in_s:.1f} s")
        before = server_cpu_s(stack)
        time.sleep(IDLE_S)
        idle_rate = {k: v / IDLE_S for k, v in delta(server_cpu_s(stack), before).items()}

        before = server_cpu_s(stack)
        started = time.monotonic()
        for _ in range(args.rounds):
            workload = Workload(stack)
            workload.drive(concurrency=3)
            workload.close()
        while read_truth_of(stack).open_runs:
            time.sleep(0.5)
        run_wall = time.monotonic() - started
        running = delta(server_cpu_s(stack), before)
        runs = read_truth_of(stack).finished_runs
        time.sleep(5)  # late writes (metrics, callbacks) land before the exporter starts

        state = Path(tempfile.mkdtemp(prefix="bench-real-")) / "state.db"
        before = server_cpu_s(stack)
        started = time.monotonic()
        exporter = Exporter(
            stack.letta_url,
            state,
            "--backfill=2h",
            f"--poll.interval={args.poll_interval}",
            "--runs.grace-period=5s",
            "--letta.timeout=30s",
            "--log.level=info",
            *args.exporter_arg,
        ).start(60)
        try:
            exporter.wait_for(
                lambda: sum(exporter.finished(by=("status",)).values()) >= runs,
                timeout=900,
                what=f"{runs} counted runs",
            )
            export_wall = time.monotonic() - started
            answering = delta(server_cpu_s(stack), before)
            requests = requests_by_endpoint(exporter)
        finally:
            exporter.kill()
    finally:
        stack.stop()

    net = {k: max(0.0, answering[k] - idle_rate[k] * export_wall) for k in answering}
    total_requests = sum(requests.values())
    run_cost_ms = sum(running.values()) / runs * 1000
    answer_ms = sum(net.values()) / runs * 1000
    print(f"{runs} finished runs; running them took {run_wall:.1f} s wall")
    print(
        "  Letta + Postgres CPU running them: "
        f"{run_cost_ms:.1f} ms/run (Letta {running['letta'] / runs * 1000:.1f}, "
        f"Postgres {running['postgres'] / runs * 1000:.1f})"
    )
    print(
        f"exporter backfill: {export_wall:.1f} s wall, {total_requests} requests "
        f"({total_requests / runs:.2f}/run): "
        + ", ".join(f"{k} {v}" for k, v in requests.most_common())
    )
    print(
        f"  idle server CPU: {sum(idle_rate.values()) * 1000:.1f} ms/s "
        f"(subtracted over the {export_wall:.1f} s)"
    )
    print(
        "  Letta + Postgres CPU answering the exporter: "
        f"{answer_ms:.1f} ms/run (Letta {net['letta'] / runs * 1000:.1f}, "
        f"Postgres {net['postgres'] / runs * 1000:.1f}), "
        f"{sum(net.values()) / max(1, total_requests) * 1000:.1f} ms/request, "
        f"{answer_ms / run_cost_ms * 100:.1f} % of running the runs"
    )


if __name__ == "__main__":
    main()
