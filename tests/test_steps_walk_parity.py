"""The steps walk reads the same steps as each run's `/steps`, in the same order, so a
run's tokens, step counts and spans do not depend on which path fetched them."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from exporter.cli.client import client_from_settings
from exporter.cli.config import load_settings
from exporter.core.enrichment.step_walk import StepPlan, StepWalk
from exporter.core.runs.record import Enrichment, Phase, RunRecord
from exporter.core.runs.run_info import StepInfo
from exporter.letta.models import Step
from tests.fake_letta.fake import FakeLetta

START = 1_800_000_000.0


def test_walked_steps_equal_each_run_s_steps_across_tiny_pages() -> None:
    now = [START]
    with FakeLetta(cloud=True, clock=lambda: now[0]) as fake:
        runs = []
        for n in range(4):
            run_id = fake.create_run(f"agent-{n % 2}", created_at=now[0] - 5)
            for step in range(1 + 3 * n):
                now[0] += 0.01
                fake.add_step(
                    run_id,
                    model="openai/gpt-4o-mini",
                    prompt_tokens=100 + step,
                    completion_tokens=n + 1,
                    cached_input_tokens=step or None,
                    reasoning_tokens=n or None,
                    trace_id=f"{n:032x}",
                )
            fake.update_run(run_id, status="completed", stop_reason="end_turn")
            runs.append(run_id)
        records = tuple(
            RunRecord(
                id=run_id,
                agent_id="agent-a",
                created_ns=int((START - 5) * 1e9),
                phase=Phase.ENRICHING,
                status="completed",
                enrich=Enrichment(pending=["steps"]),
            )
            for run_id in runs
        )
        walk = StepWalk(StepPlan(records, int((START - 15) * 1e9), budget=100), page_limit=2)

        async def read() -> dict[str, list[Step]]:
            client = client_from_settings(load_settings({"base_url": fake.base_url}))
            try:
                cursor: str | None = None
                while True:
                    page = await client.list_all_steps(
                        start_ns=walk.plan.start_ns, limit=2, after=cursor
                    )
                    cursor = walk.take(page)
                    if cursor is None:
                        break
                return {run_id: await client.list_steps(run_id) for run_id in runs}
            finally:
                await client.aclose()

        per_run = asyncio.run(read())
    ready, waiting = walk.results()
    assert walk.complete and not waiting and walk.pages > 5
    assert ready == per_run
    for run_id in runs:  # what the spans are built from
        spans = [asdict(StepInfo.from_step(s)) for s in ready[run_id]]
        assert spans == [asdict(StepInfo.from_step(s)) for s in per_run[run_id]]
