"""The demo's simulated Letta speaks Letta 0.16.8: its bodies have the keys (in order) and
the JSON kinds of the captured responses in tests/fixtures/letta-0.16.8, and its lists
page as 0.16.8's do."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exporter.demo import shapes
from exporter.demo.api import LettaApi
from exporter.demo.world import MAX_RUNS, NS, SimRun, World

FIXTURES = Path(__file__).parent / "fixtures" / "letta-0.16.8"
START = 1_800_000_000 * NS
# Objects whose keys are data, not schema (a tool's own JSON schema).
FREE_FORM = frozenset({"json_schema"})


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text())


def kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def assert_same_shape(simulated: dict[str, Any], real: dict[str, Any], where: str) -> None:
    assert list(simulated) == list(real), where
    for key, value in simulated.items():
        if value is not None and real[key] is not None:
            assert kind(value) == kind(real[key]), f"{where}.{key}"
            if isinstance(value, dict) and key not in FREE_FORM:
                assert_same_shape(value, real[key], f"{where}.{key}")


@pytest.fixture(scope="module")
def world() -> World:
    world = World(start_ns=START)
    world.advance(START + 20 * 60 * NS)  # through a provider incident
    return world


def finished(world: World, predicate: Any) -> SimRun:
    return next(r for r in known(world) if r.end_ns < START + 20 * 60 * NS and predicate(r))


def known(world: World, minutes: int = 20) -> list[SimRun]:
    return world.advance(START + minutes * 60 * NS)


def test_runs_have_the_keys_of_a_run_and_of_a_listed_run(world: World) -> None:
    now = START + 20 * 60 * NS
    run = finished(world, lambda r: r.stop_reason == "end_turn" and r.steps)
    assert_same_shape(
        shapes.run_body(run, now, listed=False), fixture("runs/sync_end_turn/run.json"), "run"
    )
    listed = fixture("list/runs_default.json")[0]
    assert_same_shape(shapes.run_body(run, now, listed=True), listed, "listed run")
    assert shapes.run_body(run, now, listed=True)["total_duration_ns"] > 0
    assert shapes.run_body(run, now, listed=False)["total_duration_ns"] is None


@pytest.mark.parametrize(
    ("run_type", "scenario"),
    [("send_message_streaming", "stream_llm_500"), ("send_message_async", "async_llm_500")],
)
def test_llm_errors_look_as_on_0_16_8(world: World, run_type: str, scenario: str) -> None:
    now = START + 20 * 60 * NS
    run = finished(world, lambda r: r.error is not None and r.run_type == run_type)
    real = fixture(f"runs/{scenario}/run.json")
    body = shapes.run_body(run, now, listed=False)
    assert (body["status"], body["stop_reason"]) == (real["status"], real["stop_reason"])
    assert_same_shape(body["metadata"], real["metadata"], "metadata")
    failing = shapes.step_body(run, run.steps[-1])
    real_step = fixture(f"runs/{scenario}/steps.json")[-1]
    assert_same_shape(failing, real_step, "failed step")
    assert failing["error_type"] == real_step["error_type"] == "LLMServerError"


def test_steps_metrics_usage_and_trace(world: World) -> None:
    run = finished(world, lambda r: r.stop_reason == "end_turn" and len(r.steps) > 1)
    real_step = fixture("runs/sync_end_turn/steps.json")[0]
    for step in run.steps:
        assert_same_shape(shapes.step_body(run, step), real_step, "step")
    assert_same_shape(
        shapes.metrics_body(run), fixture("runs/sync_multi_step/metrics.json"), "metrics"
    )
    assert_same_shape(shapes.usage_body(run), fixture("runs/sync_multi_step/usage.json"), "usage")
    assert fixture("runs/sync_end_turn/trace.json") == shapes.TRACE_NOT_SERVED
    assert fixture("server/health.json") == shapes.HEALTH


def test_messages_have_the_keys_of_each_message_type(world: World) -> None:
    real = {
        m["message_type"]: m
        for scenario in ("sync_multi_step", "approval_left_pending")
        for m in fixture(f"runs/{scenario}/messages.json")
    }
    seen: Counter[str] = Counter()
    for run in known(world):
        if run.steps and run.end_ns < START + 20 * 60 * NS:
            for message in shapes.messages_body(run):
                seen[message["message_type"]] += 1
                expected = real[message["message_type"]]
                assert sorted(message) == sorted(expected), message["message_type"]
    assert set(seen) == set(real)


def test_tools_and_agents(world: World) -> None:
    real_agent = fixture("agents/alpha.json")
    real_tool = real_agent["tools"][0]
    for tool in world.tools.values():
        assert_same_shape(shapes.tool_body(tool), real_tool, "tool")
    for agent in world.agents:
        body = shapes.agent_body(agent)
        assert set(body) <= set(real_agent)
        assert all(
            kind(v) == kind(real_agent[k])
            for k, v in body.items()
            if v is not None and real_agent[k] is not None
        )


def test_every_outcome_arrives(world: World) -> None:
    outcomes = {(r.final_status, r.stop_reason) for r in known(world) if r.steps}
    assert outcomes >= {
        ("completed", "end_turn"),
        ("completed", "max_steps"),
        ("completed", "tool_rule"),
        ("completed", "requires_approval"),
        ("cancelled", "cancelled"),
        ("failed", "llm_api_error"),
        ("failed", "error"),
    }
    assert len({r.agent.name for r in known(world)}) == len(world.agents)


def get(api: LettaApi, path: str, query: str = "") -> Any:
    status, body = api.get(path, query)
    assert status == 200, (path, query, body)
    return json.loads(body)


def test_the_runs_list_pages_with_before_as_0_16_8_does(world: World) -> None:
    api = LettaApi(world, clock=lambda: START + 10 * 60 * NS)
    seen: list[str] = []
    cursor = ""
    while True:
        page = get(api, "/v1/runs/", f"order=desc&limit=50{cursor}")
        if not page:
            break
        seen += [r["id"] for r in page]
        cursor = f"&before={page[-1]['id']}"
    listed = [r.id for r in known(world, minutes=10)]
    assert sorted(seen) == sorted(listed) and len(seen) == len(set(seen))
    newest = get(api, "/v1/runs/", "order=desc&limit=2")
    assert get(api, "/v1/runs/", f"order=desc&after={newest[1]['id']}") == newest[:1]


def test_filters_and_single_run_routes(world: World) -> None:
    now = START + 10 * 60 * NS
    api = LettaApi(world, clock=lambda: now)
    active = get(api, "/v1/runs/", "order=desc&limit=1000&active=true")
    assert active and {r["status"] for r in active} <= {"created", "running"}
    waiting = get(api, "/v1/runs/", "order=desc&limit=10&stop_reason=requires_approval")
    assert [r["agent_id"] for r in waiting] == [world.agents[-1].id]
    run_id = waiting[0]["id"]
    assert get(api, f"/v1/runs/{run_id}")["stop_reason"] == "requires_approval"
    calls = get(api, f"/v1/runs/{run_id}/messages", "order=asc&limit=50")
    assert [m["message_type"] for m in calls][-1] == "approval_request_message"
    assert api.get("/v1/runs/run-00000000-0000-4000-8000-000000000000", "")[0] == 404
    assert api.get(f"/v1/runs/{run_id}/trace", "")[0] == 501
    tool_id = next(iter(world.tools))
    assert get(api, f"/v1/tools/{tool_id}")["id"] == tool_id
    agents = get(api, "/v1/agents/", "order=asc&limit=2")
    rest = get(api, "/v1/agents/", f"order=asc&limit=100&after={agents[-1]['id']}")
    assert [a["id"] for a in agents + rest] == [a.id for a in world.agents]


def test_old_runs_go_but_the_stuck_run_and_the_waiting_approval_stay() -> None:
    world = World(start_ns=START)
    first = world.advance(START + 60 * NS)
    later = world.advance(START + 3 * 3600 * NS)  # more runs than the world keeps
    assert len(later) <= MAX_RUNS + 2
    assert first[5] not in later
    stuck = [r for r in later if r.end_ns > START + 3 * 3600 * NS and r.created_ns < START]
    waiting = [r for r in later if r.stop_reason == "requires_approval"]
    assert len(stuck) == 1 and len(waiting) == 1
