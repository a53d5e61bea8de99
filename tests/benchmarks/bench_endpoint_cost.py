"""What each request the exporter makes costs a real Letta 0.16.8 server, and so what
enrichment per finished run costs before and after issue #27, without the exporter.

    python -m tests.benchmarks.bench_endpoint_cost [--rounds 2] [--repeat 3]

Starts the real-server stack (tests/realserver), drives the contract workload `--rounds`
times, then asks, as the exporter asks them (same paths and parameters), for every
finished run: `/steps` (tokens and steps), `/metrics` (tools before #27) and the
`/v1/tools/{id}` lookups its tool ids need (once per id: the exporter caches them); and
the whole `GET /v1/messages/` walk over the same runs (tools after #27); and, to compare,
`GET /v1/runs/{id}` (what any per-run request costs at least) and `/usage`. Each kind is
asked `--repeat` times, interleaved, and its Letta + Postgres CPU (psutil, idle rate
subtracted) is divided by its requests. Prints ms per request and per run, and the cut
in enrichment CPU per run that batching tools can give on 0.16.8, whose `GET /v1/steps/`
answers 400 (so `/steps` stays per run).

Measured here (2 shared cores, under load; 56 runs, 3 passes each, twice): `/steps` 28.4
and 28.9 ms/request, `/metrics` with its tool lookups 10.8 and 12.0, `GET /v1/runs/{id}`
11.9 (any per-run request costs about that: the actor, the run, the answer), `/usage`
27.2, the messages walk 0.7 and 1.1 ms per run covered. Enrichment per run: 39.4 → 29.1
and 41.1 → 30.0 ms, 26 and 27 % less; `/steps` is what is left, and with no exact cheaper
per-run source (`/usage` costs as much and is inexact) that is the floor on 0.16.8.
End to end, with the exporter's cycle around it, see bench_realserver.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import httpx

from exporter.core.enrichment.tool_walk import PAGE_LIMIT
from exporter.letta.client import STEPS_PAGE
from tests.benchmarks.bench_realserver import delta, server_cpu_s
from tests.realserver.stack import Stack, start_stack
from tests.realserver.workload import Workload

IDLE_S = 10.0


def finished_runs(http: httpx.Client) -> list[str]:
    runs = http.get("/v1/runs/", params={"order": "desc", "limit": 1000}).json()
    return [r["id"] for r in runs if r["status"] in ("completed", "failed", "cancelled")]


def steps_requests(http: httpx.Client, runs: list[str]) -> int:
    for run in runs:
        http.get(f"/v1/runs/{run}/steps", params={"order": "asc", "limit": STEPS_PAGE})
    return len(runs)


def run_requests(http: httpx.Client, runs: list[str]) -> int:
    for run in runs:
        http.get(f"/v1/runs/{run}")
    return len(runs)


def usage_requests(http: httpx.Client, runs: list[str]) -> int:
    for run in runs:
        http.get(f"/v1/runs/{run}/usage")
    return len(runs)


def metrics_requests(http: httpx.Client, runs: list[str]) -> int:
    tool_ids: set[str] = set()
    for run in runs:
        answer = http.get(f"/v1/runs/{run}/metrics")
        if answer.status_code == 200:
            tool_ids.update(answer.json().get("tools_used") or ())
    for tool in tool_ids:
        http.get(f"/v1/tools/{tool}")
    return len(runs) + len(tool_ids)


def walk_requests(http: httpx.Client, runs: list[str]) -> int:
    """The whole messages walk, newest first, until the page that ends it."""
    pages = 0
    before: str | None = None
    while True:
        params: dict[str, str | int] = {"order": "desc", "limit": PAGE_LIMIT}
        if before is not None:
            params["before"] = before
        page = http.get("/v1/messages/", params=params).json()
        pages += 1
        if len(page) < PAGE_LIMIT:
            return pages
        before = page[-1]["id"]


def measure(stack: Stack, idle: dict[str, float], ask: Callable[[], int]) -> tuple[float, int]:
    """Net Letta + Postgres CPU seconds of one pass, and its requests."""
    before = server_cpu_s(stack)
    started = time.monotonic()
    requests = ask()
    wall = time.monotonic() - started
    spent = delta(server_cpu_s(stack), before)
    return sum(max(0.0, spent[k] - idle[k] * wall) for k in spent), requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="workload rounds (~29 runs each)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per kind, interleaved")
    args = parser.parse_args()

    stack = start_stack()
    try:
        for _ in range(args.rounds):
            workload = Workload(stack)
            workload.drive(concurrency=3)
            workload.close()
        time.sleep(5)  # late writes (metrics, callbacks) land first
        before = server_cpu_s(stack)
        time.sleep(IDLE_S)
        idle = {k: v / IDLE_S for k, v in delta(server_cpu_s(stack), before).items()}
        with httpx.Client(base_url=stack.letta_url, timeout=60) as http:
            runs = finished_runs(http)
            kinds: dict[str, Callable[[], int]] = {
                "steps": lambda: steps_requests(http, runs),
                "metrics + tool lookups": lambda: metrics_requests(http, runs),
                "messages walk": lambda: walk_requests(http, runs),
                "GET run (any per-run request's floor)": lambda: run_requests(http, runs),
                "usage (inexact: newest 50 steps, no cache tokens)": lambda: usage_requests(
                    http, runs
                ),
            }
            cost: dict[str, list[float]] = {kind: [] for kind in kinds}
            requests: dict[str, int] = {}
            for _ in range(args.repeat):
                for kind, ask in kinds.items():
                    cpu_s, requests[kind] = measure(stack, idle, ask)
                    cost[kind].append(cpu_s / len(runs) * 1000)
    finally:
        stack.stop()

    print(f"{len(runs)} finished runs; idle server CPU {sum(idle.values()) * 1000:.1f} ms/s")
    per_run = {kind: statistics.median(values) for kind, values in cost.items()}
    for kind, values in cost.items():
        spread = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"  {kind}: {requests[kind]} requests, {per_run[kind]:.1f} ms/run median "
            f"({spread}), {per_run[kind] * len(runs) / requests[kind]:.1f} ms/request"
        )
    before_ms = per_run["steps"] + per_run["metrics + tool lookups"]
    after_ms = per_run["steps"] + per_run["messages walk"]
    print(
        f"enrichment per run: before #27 {before_ms:.1f} ms (steps + metrics), after "
        f"{after_ms:.1f} ms (steps + walk share): {(1 - after_ms / before_ms) * 100:.0f} % less"
    )


if __name__ == "__main__":
    main()
