"""Steps, traces and tools (tests/fake_letta/steps.py) as /steps, /usage, /metrics,
/trace and /v1/tools serve them.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from tests.fake_checks import fixture, ids_of, walk_steps
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_steps_usage_metrics_and_trace(fake: FakeLetta, http: httpx.Client) -> None:
    run_id = fake.create_run("agent-a", status="running")
    step_ids = [
        fake.add_step(
            run_id, prompt_tokens=100 + i, completion_tokens=10, tool_ids=[f"tool-{i % 2}"]
        )
        for i in range(55)
    ]
    usage = http.get(f"/v1/runs/{run_id}/usage").json()
    newest = range(5, 55)  # only the 50 newest steps count (§3.5)
    assert usage == {
        "completion_tokens": 500,
        "prompt_tokens": sum(100 + i for i in newest),
        "total_tokens": sum(110 + i for i in newest),
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    assert http.get(f"/v1/runs/{run_id}/metrics").json()["num_steps"] == 0  # not refreshed yet
    fake.update_run(run_id, status="completed", stop_reason="end_turn")
    metrics = http.get(f"/v1/runs/{run_id}/metrics").json()
    assert metrics["num_steps"] == 50 and metrics["tools_used"] == ["tool-1", "tool-0"]
    steps = http.get(f"/v1/runs/{run_id}/steps").json()
    assert [s["id"] for s in steps] == step_ids[::-1]  # default order desc, limit 100
    assert set(steps[0]) == set(fixture("runs/sync_multi_step/steps.json")[0])
    assert steps[0]["model"] == "fake-llm" and steps[0]["model_handle"] == "openai-proxy/fake-llm"
    page = http.get(f"/v1/runs/{run_id}/steps", params={"limit": 3, "after": step_ids[50]}).json()
    assert [s["id"] for s in page] == step_ids[49:46:-1]  # desc + after = next (older) page
    page = http.get(f"/v1/runs/{run_id}/steps", params={"limit": 3, "before": step_ids[50]}).json()
    # before = the rows newer than X, newest first, from the start (not the adjacent page)
    assert [s["id"] for s in page] == step_ids[:50:-1][:3]
    page = http.get(
        f"/v1/runs/{run_id}/steps", params={"order": "asc", "limit": 2, "after": step_ids[0]}
    ).json()
    assert [s["id"] for s in page] == step_ids[1:3]
    missing = "step-00000000-0000-4000-8000-000000000000"
    unknown = http.get(f"/v1/runs/{run_id}/steps", params={"after": missing})
    assert unknown.status_code == 404 and unknown.json() == {
        "detail": f"No Step found with id {missing}"
    }
    fake.update_step(step_ids[0], status="failed", prompt_tokens=1, completion_tokens=1)
    assert http.get(f"/v1/runs/{run_id}/steps").json()[-1]["total_tokens"] == 2
    # trace: 501 without ClickHouse, the stored rows once there are some
    assert http.get(f"/v1/runs/{run_id}/trace").status_code == 501
    spans = [{"SpanName": "agent_step", "Duration": i} for i in range(4)]
    fake.set_trace(run_id, spans)
    assert http.get(f"/v1/runs/{run_id}/trace", params={"limit": 2}).json() == spans[:2]
    assert http.get(f"/v1/runs/{run_id}/trace", params={"limit": 5001}).status_code == 422


def test_run_with_120_steps_pages_fully_and_truth_counts_them_all(
    fake: FakeLetta, http: httpx.Client
) -> None:
    run_id = fake.create_run("agent-long", status="running")
    models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"]
    step_ids = [
        fake.add_step(
            run_id,
            model=models[i % 2],
            prompt_tokens=100 + i,
            completion_tokens=1 + i % 7,
            cached_input_tokens=i if i % 3 == 0 else None,  # None and 0 (i=0) both omitted
            cache_write_tokens=5 if i % 10 == 1 else None,
            reasoning_tokens=2 if i % 4 == 2 else None,
        )
        for i in range(120)
    ]
    fake.update_run(run_id, status="completed", stop_reason="max_steps")
    for limit in (7, 50, 1000):
        assert walk_steps(http, run_id, "asc", limit) == step_ids
        assert walk_steps(http, run_id, "desc", limit) == step_ids[::-1]
    assert len(ids_of(http.get(f"/v1/runs/{run_id}/steps"))) == 100  # default limit
    newest = range(70, 120)
    usage = http.get(f"/v1/runs/{run_id}/usage").json()
    assert usage["prompt_tokens"] == sum(100 + i for i in newest)  # 50 newest only (§3.5)
    assert usage["completion_tokens"] == sum(1 + i % 7 for i in newest)
    assert http.get(f"/v1/runs/{run_id}/metrics").json()["num_steps"] == 50
    expected: Counter[tuple[str, str, str]] = Counter()
    for i in range(120):
        model = ("gpt-4o-mini", "claude-sonnet-4")[i % 2]
        expected[("agent-long", model, "input")] += 100 + i
        expected[("agent-long", model, "output")] += 1 + i % 7
        if i % 3 == 0 and i:
            expected[("agent-long", model, "cached_input")] += i
        if i % 10 == 1:
            expected[("agent-long", model, "cache_write")] += 5
        if i % 4 == 2:
            expected[("agent-long", model, "reasoning")] += 2
    assert fake.token_truth() == expected
    assert all(value > 0 for value in fake.token_truth().values())
    assert fake.step_count_truth() == {run_id: 120}
