"""Tools from the messages walk on a real Letta 0.16.8, checked against its database.

Runs made while the exporter runs (so its walks cover them): plain tool runs, a run with
over 50 tool calls (past what `/metrics` reads), a run created with
`include_return_message_types` (which hides its calls from the run's own messages), and
an agent deleted after its runs were counted. Every call of every finished run, by agent
and tool, must match the `messages` table (each `tool_call_id` once per run), and the
runs that used each tool must match `run_metrics.tools_used` for runs under 50 messages.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

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


def calls_in_database(stack: Stack, agents: list[str]) -> Counter[tuple[str, str]]:
    """Tool calls of finished runs by (agent, tool name), each call id once per run."""
    conn = stack.db()
    try:
        rows = conn.run(
            "SELECT r.id, r.agent_id, m.tool_calls::text FROM messages m"
            " JOIN runs r ON r.id = m.run_id"
            " WHERE r.agent_id = ANY(:agents) AND m.tool_calls IS NOT NULL"
            " AND r.status IN ('completed', 'failed', 'cancelled')",
            agents=agents,
        )
    finally:
        conn.close()
    seen: set[tuple[str, str]] = set()
    out: Counter[tuple[str, str]] = Counter()
    for run_id, agent, raw in rows:
        for call in json.loads(raw) or []:
            key = (run_id, call["id"])
            if key in seen:
                continue
            seen.add(key)
            out[(agent, call["function"]["name"])] += 1
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
        workload.sync(kept, "many [[loop]]", max_steps=60)  # 60 calls: past /metrics' 50
        workload.sync(
            kept, "hidden [[tools=2]]", include_return_message_types=["assistant_message"]
        )
        workload.sync(gone, "x [[tools=2]]")
        agents = [kept, gone]
        expected_gone = read_truth_of(letta_stack, [gone]).finished_runs
        truth_calls = calls_in_database(letta_stack, agents)
        expected = read_truth_of(letta_stack, agents).finished_runs
        exporter.wait_for(
            lambda: sum(exporter.finished(by=("agent",)).values()) >= expected + 1,
            timeout=600,
            what=f"{expected} counted runs",
        )
        workload.delete_agent(gone)
        after_delete = +Counter({k: v for k, v in exporter_calls(exporter).items() if k[0] != warm})
        asked = requests(exporter)
    finally:
        exporter.kill()
        workload.close()
    assert expected_gone == 1
    assert truth_calls[(kept, "conversation_search")] >= 60 + 2 + 3 + 2
    assert after_delete == truth_calls
    assert asked["messages"] > 0
    assert asked["run_metrics"] <= 1, asked  # the warm-up run's at most
    assert asked["tool"] <= 1, asked
