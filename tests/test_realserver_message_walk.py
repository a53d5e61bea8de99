"""Tools from the messages walk on a real Letta 0.16.8, checked against its database.

Runs made while the exporter runs (so its walks cover them): plain tool runs, a run of
110 steps and tool calls (past what `/metrics` reads, and two pages of per-run steps), a
run created with `include_return_message_types` (which hides its calls from the run's
own messages), and an agent deleted after its runs were counted. Every call of every
finished run, by agent and tool, must match the `messages` table (each `tool_call_id`
once per run); tokens and step counts (per run on 0.16.8: `GET /v1/steps/` answers 400)
must match the `steps` table. Then the walk itself, in process, with pages of 3
messages so that runs straddle pages, must group the same calls.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from exporter.cli.client import client_from_settings
from exporter.cli.config import load_settings
from exporter.core.enrichment.tool_walk import ToolWalk, WalkPlan
from exporter.core.runs.record import Enrichment, Phase, RunRecord
from exporter.letta.models import to_epoch_ns
from tests.harness import Exporter
from tests.realserver.stack import Stack
from tests.realserver.workload import Workload, read_truth_of

pytestmark = [pytest.mark.e2e, pytest.mark.letta_server, pytest.mark.timeout(1500)]

FLAGS = (
    "--letta.timeout=30s",
    "--letta.retries=5",
    "--poll.interval=2s",
    "--runs.grace-period=5s",
    "--log.level=info",
)


def calls_by_run(stack: Stack, agents: list[str]) -> dict[str, tuple[str, Counter[str]]]:
    """Tool calls of each finished run: run id -> (agent, calls by tool name), each call
    id once per run."""
    conn = stack.db()
    try:
        runs = conn.run(
            "SELECT id, agent_id FROM runs WHERE agent_id = ANY(:agents)"
            " AND status IN ('completed', 'failed', 'cancelled')",
            agents=agents,
        )
        rows = conn.run(
            "SELECT m.run_id, m.tool_calls::text FROM messages m"
            " JOIN runs r ON r.id = m.run_id"
            " WHERE r.agent_id = ANY(:agents) AND m.tool_calls IS NOT NULL",
            agents=agents,
        )
    finally:
        conn.close()
    out = {run_id: (agent, Counter[str]()) for run_id, agent in runs}
    seen: set[tuple[str, str]] = set()
    for run_id, raw in rows:
        if run_id not in out:
            continue
        for call in json.loads(raw) or []:
            if (run_id, call["id"]) not in seen:
                seen.add((run_id, call["id"]))
                out[run_id][1][call["function"]["name"]] += 1
    return out


def calls_in_database(stack: Stack, agents: list[str]) -> Counter[tuple[str, str]]:
    """Tool calls of finished runs by (agent, tool name), each call id once per run."""
    out: Counter[tuple[str, str]] = Counter()
    for agent, calls in calls_by_run(stack, agents).values():
        for name, count in calls.items():
            out[(agent, name)] += count
    return out


def exporter_calls(exporter: Exporter) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in exporter.samples().items():
        if name == "letta_run_tool_invocations_total":
            have = dict(labels)
            out[(have["agent"], have["tool"])] += int(value)
    return out


def requests(exporter: Exporter) -> Counter[str]:
    out: Counter[str] = Counter()
    for (name, labels), value in exporter.samples().items():
        if name == "letta_exporter_api_requests_total":
            out[dict(labels)["endpoint"]] += int(value)
    return out


def test_walked_tools_match_the_messages_table(letta_stack: Stack, tmp_path: Path) -> None:
    exporter = Exporter(letta_stack.letta_url, tmp_path / "state.db", *FLAGS).start(60)
    workload = Workload(letta_stack)
    try:
        warm = workload.agent("walk-warm")
        kept = workload.agent("walk-kept")
        gone = workload.agent("walk-gone")
        # A fresh exporter's first walk may not cover its runs (no run known to have ended
        # before them, one page of budget): they take the per-run path, /metrics.
        workload.sync(warm, "warm up [[tools=1]]")
        exporter.wait_for(
            lambda: sum(exporter.finished(by=("agent",)).values()) >= 1,
            timeout=300,
            what="the first run counted",
        )
        for text in ("a [[tools=2]]", "b [[tools=3]]", "c [[]]"):
            workload.sync(kept, text)
        workload.sync(kept, "many [[loop]]", max_steps=110)  # past /metrics' 50, /steps' 100
        workload.sync(
            kept, "hidden [[tools=2]]", include_return_message_types=["assistant_message"]
        )
        workload.sync(gone, "x [[tools=2]]")
        agents = [kept, gone]
        expected_gone = read_truth_of(letta_stack, [gone]).finished_runs
        truth_calls = calls_in_database(letta_stack, agents)
        truth = read_truth_of(letta_stack, agents)
        expected = truth.finished_runs
        exporter.wait_for(
            lambda: sum(exporter.finished(by=("agent",)).values()) >= expected + 1,
            timeout=600,
            what=f"{expected} counted runs",
        )
        workload.delete_agent(gone)
        after_delete = +Counter({k: v for k, v in exporter_calls(exporter).items() if k[0] != warm})
        asked = requests(exporter)
        tokens = +Counter({k: v for k, v in exporter.tokens().items() if k[0] != warm})
        steps = exporter.value("letta_run_steps_sum") - sum(
            read_truth_of(letta_stack, [warm]).steps.values()
        )
    finally:
        exporter.kill()
        workload.close()
    assert expected_gone == 1
    assert truth_calls[(kept, "conversation_search")] >= 110 + 2 + 3 + 2
    assert after_delete == truth_calls
    assert tokens == truth.tokens
    assert steps == sum(truth.steps.values()) and max(truth.steps.values()) == 110
    assert asked["messages"] > 0
    assert asked["run_metrics"] <= 1, asked  # the warm-up run's at most
    assert asked["tool"] <= 1, asked


def test_the_walk_with_tiny_pages_groups_every_run_s_calls_like_the_database(
    letta_stack: Stack,
) -> None:
    workload = Workload(letta_stack)
    try:
        agent = workload.agent("walk-tiny")
        for text in ("a [[tools=2]]", "b [[tools=3]]", "c [[]]", "d [[tools=1]]"):
            workload.sync(agent, text)
    finally:
        workload.close()
    truth = calls_by_run(letta_stack, [agent])
    conn = letta_stack.db()
    try:
        rows = conn.run(
            "SELECT id, created_at, completed_at, status FROM runs WHERE agent_id = :agent",
            agent=agent,
        )
    finally:
        conn.close()
    records = [
        RunRecord(
            id=run_id,
            agent_id=agent,
            created_ns=to_epoch_ns(created),
            phase=Phase.ENRICHING,
            status=status,
            completed_ns=to_epoch_ns(completed) if completed is not None else None,
            enrich=Enrichment(pending=["metrics"]),
        )
        for run_id, created, completed, status in rows
    ]
    ends = {r.id: r.completed_ns for r in records if r.status == "completed"}
    walk = ToolWalk(WalkPlan(tuple(records), budget=10_000), ends.get)

    async def read() -> None:
        client = client_from_settings(load_settings({"base_url": letta_stack.letta_url}))
        try:
            cursor: str | None = None
            while True:
                page = await client.list_messages(limit=3, before=cursor)
                cursor = walk.take(page)
                if cursor is None:
                    return
        finally:
            await client.aclose()

    asyncio.run(read())
    served = walk.served()
    assert walk.pages > 5, "runs straddle pages"
    assert {run_id: Counter(calls) for run_id, calls in served.items()} == {
        run_id: calls for run_id, (_, calls) in truth.items()
    }
