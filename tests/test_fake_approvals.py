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
