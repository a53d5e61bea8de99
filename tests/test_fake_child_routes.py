"""The enrichment reads (tests/fake_letta/child_routes.py): step metrics, messages."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from tests.fake_checks import MISSING_STEP, not_found_detail, path_422
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


STEP_METRICS_KEYS = [
    "id",
    "organization_id",
    "provider_id",
    "run_id",
    "agent_id",
    "step_start_ns",
    "llm_request_start_ns",
    "llm_request_ns",
    "tool_execution_ns",
    "step_ns",
    "base_template_id",
    "template_id",
    "project_id",
]


def test_step_metrics_route(fake: FakeLetta, http: httpx.Client) -> None:
    run_id = fake.create_run("agent-a", status="running")
    timed = fake.add_step(
        run_id, step_ns=2_000_000_000, llm_request_ns=1_500_000_000, tool_execution_ns=300
    )
    partial = fake.add_step(run_id, step_ns=7)
    untimed = fake.add_step(run_id)
    body = http.get(f"/v1/steps/{timed}/metrics").json()
    assert list(body) == STEP_METRICS_KEYS
    assert body == {
        "id": timed,
        "organization_id": "org-00000000-0000-4000-8000-000000000000",
        "provider_id": None,
        "run_id": run_id,
        "agent_id": "agent-a",
        "step_start_ns": None,  # never persisted by record_step_metrics_async in 0.16.8
        "llm_request_start_ns": None,
        "llm_request_ns": 1_500_000_000,
        "tool_execution_ns": 300,
        "step_ns": 2_000_000_000,
        "base_template_id": None,
        "template_id": None,
        "project_id": None,
    }
    short = http.get(f"/v1/steps/{partial}/metrics").json()
    assert (short["step_ns"], short["llm_request_ns"], short["tool_execution_ns"]) == (
        7,
        None,
        None,
    )
    # no step_metrics row / no step at all: the same NoResultFound 404
    for step_id in (untimed, MISSING_STEP):
        response = http.get(f"/v1/steps/{step_id}/metrics")
        assert response.status_code == 404
        assert response.json() == not_found_detail("StepMetrics", step_id)
    # the row can appear later, as when Letta fills it at step end
    fake.update_step(untimed, llm_request_ns=5)
    fake.update_step(untimed, step_ns=9, status="success")
    later = http.get(f"/v1/steps/{untimed}/metrics").json()
    assert (later["llm_request_ns"], later["step_ns"]) == (5, 9)
    malformed = http.get("/v1/steps/step-1/metrics")
    assert malformed.status_code == 422
    assert malformed.json() == path_422("step_id", "step", "step-1")
    assert http.get(f"/v1/steps/{timed}").status_code == 404  # only /metrics is modelled
    fake.delete_run(run_id)  # steps and their metrics go with the run
    assert http.get(f"/v1/steps/{timed}/metrics").status_code == 404


def test_cloud_profile_has_no_run_metrics_and_messages_carry_the_tool_calls() -> None:
    with FakeLetta(cloud=True) as fake:
        tool = fake.add_tool("web_search")
        run_id = fake.create_run("agent-a")
        fake.add_step(run_id, tool_ids=[tool, tool])
        fake.update_run(run_id, status="completed", stop_reason="end_turn")
        base = f"{fake.base_url}/v1/runs/{run_id}"
        missing = httpx.get(f"{base}/metrics")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
        messages = httpx.get(f"{base}/messages").json()
        assert [m["message_type"] for m in messages] == [
            "tool_call_message",
            "tool_return_message",
        ] * 2
        assert {m["tool_call"]["name"] for m in messages if "tool_call" in m} == {"web_search"}
        second = httpx.get(f"{base}/messages", params={"after": messages[1]["id"]}).json()
        assert [m["id"] for m in second] == [m["id"] for m in messages[2:]]
        assert httpx.get(f"{base}/messages", params={"after": "message-nope"}).status_code == 404
        assert fake.tool_call_truth() == (
            Counter({("agent-a", "web_search"): 1}),
            Counter({("agent-a", "web_search"): 2}),
        )
