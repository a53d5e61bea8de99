"""Workloads (tests/fake_letta/workload.py): raw items, bursts, bulk loads."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.fake_checks import connect, ids_of, iso, walk_steps
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_raw_items_keep_their_place(fake: FakeLetta, http: httpx.Client) -> None:
    now = time.time()
    older = fake.create_run("agent-a", created_at=now - 10, status="completed")
    newer = fake.create_run("agent-a", created_at=now, status="completed")
    fake.add_raw_item({"created_at": iso(now - 5), "status": "completed"})  # no id
    fake.add_raw_item({"id": "run-bad", "created_at": iso(now - 2), "status": 42})
    fake.add_raw_item({"surprise": True})  # no created_at: head of the list
    body = http.get("/v1/runs/").json()
    assert [item.get("id", item.get("surprise")) for item in body] == [
        True,
        newer,
        "run-bad",
        None,
        older,
    ]
    # filters apply to the raw object's own fields; a string id works as a cursor
    assert ids_of(
        http.get("/v1/runs/", params={"statuses": "completed", "agent_id": "agent-a"})
    ) == [newer, older]
    after_bad = http.get("/v1/runs/", params={"before": "run-bad"}).json()
    assert [item.get("id") for item in after_bad] == [None, older]
    assert fake.truth() == {("agent-a", "completed", None): 2}


def test_a_burst_shares_the_newest_timestamp_and_finishes_every_run() -> None:
    with FakeLetta(clock=lambda: 1_795_000_000.5) as fake:
        ids = fake.finish_burst(20, ["agent-a", "agent-b"], shared_fraction=0.3)
        with httpx.Client(base_url=fake.base_url) as client:
            body = client.get("/v1/runs/", params={"limit": 100}).json()
    assert sorted(run["id"] for run in body) == sorted(ids)
    stamps = [run["created_at"] for run in body]
    assert stamps[:6] == [stamps[0]] * 6 and len(set(stamps[6:])) > 1
    assert all(run["status"] in ("completed", "failed", "cancelled") for run in body)
    assert sum(fake.truth().values()) == 20


def test_bulk_load_pages_cleanly_and_truths_read_the_lazy_steps() -> None:
    # How fast it loads, pages and counts: tests/benchmarks/bench_fake.py.
    with FakeLetta() as fake, connect(fake.base_url, timeout=10.0) as http:
        run_ids = fake.bulk_load(100_000, agents=7, seed=1)
        assert len(fake) == 100_000 and sum(fake.truth().values()) == 100_000
        walked: list[str] = []
        params: dict[str, Any] = {"limit": 1000}
        for _ in range(3):
            page = ids_of(http.get("/v1/runs/", params=params))
            walked += page
            params["before"] = page[-1]
        assert walked == run_ids[::-1][:3000]
        again = ids_of(http.get("/v1/runs/", params={"limit": 1000}))  # cached bytes, joined
        assert again == walked[:1000]
        usage = http.get(f"/v1/runs/{run_ids[0]}/usage").json()
        assert usage["total_tokens"] > 0
        steps = http.get(f"/v1/runs/{run_ids[0]}/steps").json()
        assert sum(s["total_tokens"] for s in steps) == usage["total_tokens"]
        tokens = fake.token_truth()
        counts = fake.step_count_truth()
        assert sum(counts.values()) == sum(1 + i % 3 for i in range(100_000))
        assert {key[1:] for key in tokens} == {("fake-llm", "input"), ("fake-llm", "output")}
        assert len(fake._steps_by_id) == len(steps)  # only the run whose /steps was read


def test_bulk_runs_serve_lazy_steps_without_building_them(
    fake: FakeLetta, http: httpx.Client
) -> None:
    run_ids = fake.bulk_load(12, agents=["agent-x", "agent-y"], seed=3)
    tokens = fake.token_truth()  # computed from the lazy description ...
    counts = fake.step_count_truth()
    assert set(counts) == set(run_ids) and set(counts.values()) == {1, 2, 3}
    usage = {r: http.get(f"/v1/runs/{r}/usage").json() for r in run_ids}
    # ... as are /usage and /metrics: nothing has built a Step object yet
    assert all(fake._runs[r].lazy_steps is not None for r in run_ids)
    assert fake._steps_by_id == {}
    rebuilt: Counter[tuple[str, str, str]] = Counter()
    for run_id in run_ids:
        metrics = http.get(f"/v1/runs/{run_id}/metrics").json()
        assert metrics["num_steps"] == counts[run_id]
        asc = walk_steps(http, run_id, "asc", 1)
        assert walk_steps(http, run_id, "desc", 2) == asc[::-1]
        steps = http.get(f"/v1/runs/{run_id}/steps").json()
        assert [s["id"] for s in steps] == asc[::-1] and len(steps) == counts[run_id]
        assert sum(s["total_tokens"] for s in steps) == usage[run_id]["total_tokens"]
        for step in steps:
            rebuilt[(step["agent_id"], step["model"], "input")] += step["prompt_tokens"]
            rebuilt[(step["agent_id"], step["model"], "output")] += step["completion_tokens"]
            timing = http.get(f"/v1/steps/{step['id']}/metrics").json()
            assert 0 < timing["llm_request_ns"] < timing["step_ns"]
            assert timing["run_id"] == run_id
        assert (
            sum(http.get(f"/v1/steps/{s['id']}/metrics").json()["step_ns"] for s in steps)
            <= metrics["run_ns"]
        )
    assert rebuilt == tokens == fake.token_truth()  # materialised or not, the same truth
    assert fake.step_count_truth() == counts
