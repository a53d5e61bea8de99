"""Requests per finished run, by endpoint: the poll cycle in process against the fake.

    python -m tests.benchmarks.bench_requests [--runs-per-cycle 30] [--cycles 20]

Drives tests/cycle_rig.py's exporter (default flags, 15 s cycles on a virtual clock) with
`--runs-per-cycle` runs finishing before each cycle, each of 1-3 steps calling 0-2 tools,
and prints the requests Letta answered per finished run by endpoint, for the 0.16.8
profile and the cloud profile, with the messages walk ("after") and without it
("before": a server that does not serve `GET /v1/messages/`, i.e. the per-run path).
Requests, not time: the rig's Letta answers in microseconds.

Measured (30 runs a cycle, 20 cycles): 0.16.8 before 2.06/run (steps 1.00, run_metrics
1.00, list pages 0.06), after 1.09/run (steps 1.00, messages 0.04; `GET /v1/steps/`
answers 400, asked once); cloud before 2.06/run (steps 1.00, run_messages 1.00), after
0.12/run (messages 0.04, steps list 0.03, list pages 0.05).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from collections import Counter
from pathlib import Path

from tests.cycle_rig import MODEL, CycleRig, open_rig

_ENDPOINTS = (
    ("runs_list", re.compile(r"^/v1/runs/$")),
    ("run", re.compile(r"^/v1/runs/[^/]+$")),
    ("steps", re.compile(r"^/v1/runs/[^/]+/steps$")),
    ("usage", re.compile(r"^/v1/runs/[^/]+/usage$")),
    ("run_metrics", re.compile(r"^/v1/runs/[^/]+/metrics$")),
    ("run_messages", re.compile(r"^/v1/runs/[^/]+/messages$")),
    ("tool", re.compile(r"^/v1/tools/")),
    ("messages", re.compile(r"^/v1/messages/$")),
    ("steps_list", re.compile(r"^/v1/steps/$")),
    ("agents", re.compile(r"^/v1/agents/$")),
)


def endpoint_of(path: str) -> str:
    return next((name for name, pattern in _ENDPOINTS if pattern.search(path)), path)


async def measure(
    *, cloud: bool, walk: bool, per_cycle: int, cycles: int
) -> tuple[int, Counter[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with open_rig(Path(tmp), runs_grace_period=5) as rig:
            if cloud:
                rig.letta.cloud = True
                rig.letta.serves_run_metrics = False
                rig.letta.serves_steps_list = walk
            rig.letta.serves_messages_list = walk
            tools = [rig.letta.add_tool(name) for name in ("web_search", "fetch")]
            await rig.cycle()
            n = 0
            for _ in range(cycles):
                for _ in range(per_cycle):
                    finish(rig, n, tools)
                    n += 1
                rig.advance(15)
                await rig.cycle()
            await rig.cycles(3, every=15)
            finished = int(rig.metrics().value("letta_runs_finished_total"))
            return finished, Counter(endpoint_of(r.url.path) for r in rig.letta.log)


def finish(rig: CycleRig, n: int, tools: list[str]) -> None:
    run_id = rig.letta.create_run(f"agent-{n % 5}", created_at=rig.now - 3)
    for step in range(1 + n % 3):
        rig.letta.add_step(
            run_id,
            model=MODEL,
            prompt_tokens=100 + n,
            completion_tokens=10,
            tool_ids=tools[: (n + step) % 3],
        )
    rig.letta.update_run(run_id, status="completed", stop_reason="end_turn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-cycle", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    for cloud in (False, True):
        for walk in (False, True):
            finished, requests = asyncio.run(
                measure(cloud=cloud, walk=walk, per_cycle=args.runs_per_cycle, cycles=args.cycles)
            )
            total = sum(requests.values())
            print(
                f"{'cloud' if cloud else '0.16.8'} {'after ' if walk else 'before'}: "
                f"{finished} runs, {total / finished:.2f} requests/run: "
                + ", ".join(f"{k} {v / finished:.2f}" for k, v in requests.most_common())
            )


if __name__ == "__main__":
    main()
