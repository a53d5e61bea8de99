"""Tools of many finished runs from one `GET /v1/messages/` walk per cycle, in process (see
tests/cycle_rig.py): the walk replaces `/metrics` and the tool lookups for the runs it
covers, counts every call, and leaves the rest to the per-run path."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from exporter.poll import message_walk
from tests.cycle_rig import MODEL, CycleRig, open_rig

CALLS = "letta_run_tool_invocations_total"
USES = "letta_run_tool_calls_total"
WALK = r"^/v1/messages/$"
METRICS = r"^/v1/runs/[^/]+/metrics$"
TOOL_LOOKUPS = r"^/v1/tools/"
RUN_MESSAGES = r"^/v1/runs/[^/]+/messages$"


def finish(rig: CycleRig, tools: list[str], *, agent: str = "agent-a", steps: int = 1) -> str:
    """A run of `steps` steps that calls `tools` in each, created 2 s ago, finished now."""
    run_id = rig.letta.create_run(agent, created_at=rig.now - 2)
    for _ in range(steps):
        rig.letta.add_step(
            run_id, model=MODEL, prompt_tokens=10, completion_tokens=2, tool_ids=tools
        )
    rig.letta.update_run(run_id, status="completed", stop_reason="end_turn")
    return run_id


async def traffic(rig: CycleRig, tools: list[str], *, cycles: int, per_cycle: int) -> None:
    """`per_cycle` runs finishing before each of `cycles` 15 s cycles, then until counted."""
    for n in range(cycles):
        for i in range(per_cycle):
            finish(rig, tools[: 1 + (n + i) % len(tools)])
        rig.advance(15)
        await rig.cycle()
    await rig.cycles(3, every=15)


def tool_metrics(rig: CycleRig) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    samples = rig.metrics()
    uses, calls = Counter[tuple[str, str]](), Counter[tuple[str, str]]()
    for name, into in ((USES, uses), (CALLS, calls)):
        for labels, value in samples.series(name).items():
            have = dict(labels)
            into[(have["agent"], have["tool"])] += int(value)
    return uses, calls


async def test_every_cycle_s_runs_take_their_tools_from_one_walk(tmp_path: Path) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        tools = [rig.letta.add_tool(name) for name in ("web_search", "fetch", "memory")]
        await rig.cycle()  # first start
        await traffic(rig, tools, cycles=6, per_cycle=8)
        uses, calls = tool_metrics(rig)
        truth_uses, truth_calls = rig.letta.tool_call_truth()
        assert rig.metrics().value("letta_runs_finished_total") == 48
        assert uses == truth_uses
        assert calls == truth_calls, "every call counted, on the /metrics server too"
        assert rig.letta.count_requests(METRICS) == 0
        assert rig.letta.count_requests(TOOL_LOOKUPS) == 0
        # The first walk reads to the end of the list; each later one a page, in which it
        # passes a run that ended before its runs began.
        assert rig.letta.count_requests(WALK) == 6 + 1
        assert rig.letta.count_requests(RUN_MESSAGES) == 0


async def test_a_run_straddling_pages_is_grouped_once_with_every_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(message_walk, "PAGE_LIMIT", 10)
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        tool = rig.letta.add_tool("web_search")
        await rig.cycle()
        await traffic(rig, [tool], cycles=1, per_cycle=2)
        long_run = finish(rig, [tool], steps=60)  # 120 messages: 12 pages and more
        for _ in range(20):
            finish(rig, [tool])
        rig.advance(15)
        await rig.cycles(4, every=15)
        uses, calls = tool_metrics(rig)
        assert calls == rig.letta.tool_call_truth()[1]
        assert calls[("agent-a", "web_search")] == 60 + 20 + 2
        assert uses[("agent-a", "web_search")] == 23
        assert rig.letta.count_requests(f"^/v1/runs/{long_run}/") == 1, "its steps only"


async def test_without_the_route_every_run_takes_the_per_run_path_and_the_route_is_rechecked(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        rig.letta.serves_messages_list = False
        tool = rig.letta.add_tool("web_search")
        await rig.cycle()
        await traffic(rig, [tool], cycles=4, per_cycle=3)
        assert rig.letta.count_requests(WALK) == 1, "asked once, then not for 5 minutes"
        assert rig.letta.count_requests(METRICS) == 12
        uses, _ = tool_metrics(rig)
        assert uses == rig.letta.tool_call_truth()[0]
        rig.letta.serves_messages_list = True
        rig.advance(300)
        await traffic(rig, [tool], cycles=3, per_cycle=3)
        assert rig.letta.count_requests(WALK) > 1
        assert rig.metrics().value("letta_runs_finished_total") == 21
