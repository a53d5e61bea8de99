"""The fake's JSON bodies (tests/fake_letta/shapes.py) equal the captured 0.16.8 ones:
the 29 real runs are loaded with their ids, timestamps, steps and metrics, and the
same URLs must return the same JSON.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fake_checks import (
    INDEX,
    MISSING_TOOL,
    SCENARIOS,
    fixture,
    index_entry,
    not_found_detail,
    path_422,
)
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


LIST_FIXTURES = [
    entry
    for entry in INDEX
    if entry["file"].startswith(("list/", "pagination/"))
    and entry["file"] != "pagination/summary.json"
]


@pytest.mark.parametrize("entry", LIST_FIXTURES, ids=lambda e: e["file"])
def test_list_responses_equal_fixtures(world_http: httpx.Client, entry: dict[str, Any]) -> None:
    response = world_http.get(entry["url"])
    assert response.status_code == entry["status"]
    assert response.json() == fixture(entry["file"])


def test_list_bytes_are_fastapi_compact_json(world_http: httpx.Client) -> None:
    response = world_http.get("/v1/runs/", params={"order": "desc"})
    expected = fixture("list/runs_order_desc.json")
    assert response.headers["content-type"] == "application/json"
    compact = json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    assert response.content == compact  # same key order, separators and timestamp text
    assert all(len(run) == 17 for run in response.json())


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_single_run_endpoints_equal_fixtures(world_http: httpx.Client, scenario: str) -> None:
    run_id = SCENARIOS[scenario]["run_id"]
    run = world_http.get(f"/v1/runs/{run_id}")
    assert run.json() == fixture(f"runs/{scenario}/run.json")
    assert run.json()["total_duration_ns"] is None  # GET one never has it (§3.3)
    assert world_http.get(f"/v1/runs/{run_id}/usage").json() == fixture(
        f"runs/{scenario}/usage.json"
    )
    assert world_http.get(f"/v1/runs/{run_id}/steps").json() == fixture(
        f"runs/{scenario}/steps.json"
    )
    metrics = world_http.get(f"/v1/runs/{run_id}/metrics").json()
    expected = fixture(f"runs/{scenario}/metrics.json")
    assert list(metrics) == list(expected)
    # run_start_ns is taken a few ms after created_at by the real server; the fake uses
    # created_at itself, so only its type is comparable.
    assert isinstance(metrics.pop("run_start_ns"), int)
    expected.pop("run_start_ns")
    assert metrics == expected


@pytest.mark.parametrize(
    "name",
    [
        "runs/sync_multi_step/steps_order_asc.json",
        "runs/sync_multi_step/steps_limit1.json",
        "runs/sync_multi_step/trace.json",
        "runs/sync_end_turn/trace.json",
    ],
)
def test_step_and_trace_variants_equal_fixtures(world_http: httpx.Client, name: str) -> None:
    entry = index_entry(name)
    response = world_http.get(entry["url"])
    assert response.status_code == entry["status"]
    assert response.json() == fixture(name)


def test_tool_route_serves_the_real_tool_shape(fake: FakeLetta, http: httpx.Client) -> None:
    real = fixture("agents/alpha.json")["tools"]
    custom = fake.add_tool("lookup_weather")
    core = fake.add_tool("conversation_search", tool_id=real[0]["id"], tool_type="letta_core")
    assert custom.startswith("tool-") and core == real[0]["id"]
    body = http.get(f"/v1/tools/{custom}").json()
    assert list(body) == list(real[0])  # same 18 keys in the same order
    assert body["id"] == custom and body["name"] == "lookup_weather"
    assert body["tool_type"] == "custom" and body["tags"] == []
    assert body["json_schema"]["name"] == "lookup_weather"
    assert body["metadata_"] == {} and body["return_char_limit"] == 50_000
    served = http.get(f"/latest/tools/{core}").json()
    assert served["tool_type"] == "letta_core" and served["tags"] == ["letta_core"]
    assert served["source_code"] is None
    for key in ("source_type", "args_json_schema", "created_by_id", "metadata_", "project_id"):
        assert served[key] == real[0][key], key
    # unknown, deleted and malformed ids
    unknown = http.get(f"/v1/tools/{MISSING_TOOL}")
    assert unknown.status_code == 404
    assert unknown.json() == not_found_detail("Tool", MISSING_TOOL)
    assert fake.delete_tool(custom) and not fake.delete_tool(custom)
    assert http.get(f"/v1/tools/{custom}").json() == not_found_detail("Tool", custom)
    for malformed in ("tool-0001", "agent-00000000-0000-4000-8000-000000000000", core + "0"):
        response = http.get(f"/v1/tools/{malformed}")
        assert response.status_code == 422, malformed
        assert response.json() == path_422("tool_id", "tool", malformed)
    # routing niceties shared with the runs routes
    slash = http.get(f"/v1/tools/{core}/")
    assert slash.status_code == 307 and slash.headers["location"].endswith(f"/v1/tools/{core}")
    assert http.post(f"/v1/tools/{core}").status_code == 405
    assert http.get(f"/v1/tools/{core}", headers={"user_id": "x"}).status_code == 400
    with pytest.raises(ValueError, match="duplicate"):
        fake.add_tool("again", tool_id=core)
    with pytest.raises(ValueError, match="uuid4"):
        fake.add_tool("bad", tool_id="tool-0001")
    with pytest.raises(ValueError, match="tool_type"):
        fake.add_tool("bad", tool_type="plugin")
