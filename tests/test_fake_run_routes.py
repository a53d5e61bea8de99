"""The runs routes (tests/fake_letta/run_routes.py): list filters and active runs."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_checks import fixture, ids_of
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_list_filters(world_http: httpx.Client) -> None:
    every = fixture("list/runs_order_desc.json")
    gamma = "agent-2be3999f-6e8a-4a56-a3ab-a3730e499899"
    alpha = "agent-4d0e970e-e87f-4399-be4e-e59a14d631e3"
    both = ids_of(world_http.get("/v1/runs/", params={"agent_ids": [gamma, alpha]}))
    assert both == [r["id"] for r in every if r["agent_id"] in (gamma, alpha)]
    # agent_id replaces agent_ids
    only = ids_of(world_http.get("/v1/runs/", params={"agent_ids": [alpha], "agent_id": gamma}))
    assert only == [r["id"] for r in every if r["agent_id"] == gamma]
    # ascending=true overrides order=desc
    asc = ids_of(world_http.get("/v1/runs/", params={"ascending": "true", "order": "desc"}))
    assert asc == [r["id"] for r in reversed(every)]
    # filters combine with cursors; the cursor may belong to another agent
    cancelled = ids_of(
        world_http.get("/v1/runs/", params={"statuses": "cancelled", "stop_reason": "cancelled"})
    )
    assert cancelled == [r["id"] for r in every if r["status"] == "cancelled"]
    page = ids_of(world_http.get("/v1/runs/", params={"agent_id": alpha, "before": every[1]["id"]}))
    assert page == [r["id"] for r in every[2:] if r["agent_id"] == alpha]
    assert world_http.get("/v1/runs/", params={"conversation_id": "conv-x"}).json() == []


def test_active_runs(fake: FakeLetta, http: httpx.Client) -> None:
    created = fake.create_run("agent-a", background=True)
    running = fake.create_run("agent-b")
    fake.update_run(running, status="running")
    fake.create_run("agent-a", status="completed")
    assert ids_of(http.get("/v1/runs/active")) == [running, created]
    assert ids_of(http.get("/v1/runs/active", params={"background": "true"})) == [created]
    assert ids_of(http.get("/v1/runs/", params={"active": "true"})) == [running, created]
    assert ids_of(http.get("/v1/runs/", params={"statuses": ["running"]})) == [running]
    assert http.get("/v1/runs/active", params={"background": "maybe"}).status_code == 422
