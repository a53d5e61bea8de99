"""Tool approvals (tests/fake_letta/approvals.py) leave the captured run shapes."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_checks import fixture
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_the_approval_lifecycle_has_the_captured_shape(fake: FakeLetta, http: httpx.Client) -> None:
    captured = {
        name: fixture(f"runs/{name}/run.json")
        for name in ("approval_left_pending", "sync_pending_approval_conflict")
    }
    waiting = fake.request_approval("agent-g")
    status, refused = fake.send_message("agent-g")
    assert status == 409 and fake.pending_approval("agent-g") == waiting
    for run_id, name in (
        (waiting, "approval_left_pending"),
        (refused, "sync_pending_approval_conflict"),
    ):
        got = http.get(f"/v1/runs/{run_id}").json()
        want = captured[name]
        assert (got["status"], got["stop_reason"]) == (want["status"], want["stop_reason"])
        assert got["metadata"] == want["metadata"]
    continued = fake.answer_approval("agent-g")
    assert fake.pending_approval("agent-g") is None
    assert http.get(f"/v1/runs/{waiting}").json()["stop_reason"] == "requires_approval"
    assert http.get(f"/v1/runs/{continued}").json()["stop_reason"] == "end_turn"
    assert fake.send_message("agent-g")[0] == 200


def test_cancelling_the_waiting_run_ends_the_wait_and_conversations_wait_apart(
    fake: FakeLetta, http: httpx.Client
) -> None:
    first = fake.request_approval("agent-g", conversation_id="conv-1")
    second = fake.request_approval("agent-g", conversation_id="conv-2")
    assert fake.send_message("agent-g")[0] == 200  # the agent's own thread does not wait
    assert fake.cancel_run(first) == "cancelled"
    run = http.get(f"/v1/runs/{first}").json()
    assert (run["status"], run["stop_reason"]) == ("cancelled", "cancelled")  # timeline fixture
    assert fake.pending_approvals() == {("agent-g", "conv-2"): second}
    listed = http.get("/v1/runs/", params={"conversation_id": "conv-2"}).json()
    assert [r["id"] for r in listed] == [second]
    assert fake.cancel_run(fake.answer_approval("agent-g", conversation_id="conv-2")) == "failed"


def test_a_cancel_in_a_conversation_orphans_its_request_and_refusals_stream(
    fake: FakeLetta, http: httpx.Client
) -> None:
    waiting = fake.request_approval("agent-g", conversation_id="conv-1")
    own = fake.request_approval("agent-g")
    assert fake.cancel_run(waiting) == fake.cancel_run(own) == "cancelled"
    # The agent's own thread is cleaned up; the conversation keeps the request (3176).
    assert fake.pending_approvals() == {}
    assert fake.orphaned_approvals() == {("agent-g", "conv-1"): waiting}
    assert fake.send_message("agent-g")[0] == 200
    status, refused = fake.send_message("agent-g", conversation_id="conv-1")
    assert status == 409
    run = http.get(f"/v1/runs/{refused}").json()
    assert (run["status"], run["stop_reason"], run["conversation_id"]) == (
        "failed",
        "error",
        "conv-1",
    )
    assert run["metadata"]["error"]["run_id"] == refused
    assert "waiting for approval" in run["metadata"]["error"]["message"]
    fake.answer_approval("agent-g", conversation_id="conv-1", approve=False)
    assert fake.orphaned_approvals() == {}
    assert fake.send_message("agent-g", conversation_id="conv-1")[0] == 200


def test_impossible_states_and_cloud_stop_reasons(fake: FakeLetta, http: httpx.Client) -> None:
    credits = fake.finish_with("agent-h", "insufficient_credits")
    overflow = fake.finish_with("agent-h", "context_window_overflow_in_system_prompt")
    cut = fake.finish_with("agent-h", "max_tokens_exceeded")
    open_run = fake.create_run("agent-h")
    fake.update_run(open_run, status="running", stop_reason="requires_approval")
    no_time = fake.create_run("agent-h")
    fake.update_run(no_time, status="completed", stop_reason="end_turn", without_completed_at=True)
    got = {r["id"]: r for r in http.get("/v1/runs/", params={"agent_id": "agent-h"}).json()}
    assert [(got[r]["status"], got[r]["stop_reason"]) for r in (credits, overflow, cut)] == [
        ("failed", "insufficient_credits"),
        ("failed", "context_window_overflow_in_system_prompt"),
        ("failed", "max_tokens_exceeded"),
    ]
    assert (got[open_run]["status"], got[open_run]["stop_reason"]) == (
        "running",
        "requires_approval",
    )
    assert got[no_time]["status"] == "completed" and got[no_time]["completed_at"] is None
    active = http.get("/v1/runs/", params={"agent_id": "agent-h", "active": "true"}).json()
    assert [r["id"] for r in active] == [open_run]
