"""The life of a run (tests/fake_letta/lifecycle.py): updates as RunManager writes them,
metrics that commit later, late commits, cascading deletes.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fake_checks import ManualClock, connect, ids_of
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_total_duration_only_in_list_and_only_after_metrics_delay() -> None:
    clock = ManualClock()
    with FakeLetta(clock=clock) as fake, connect(fake.base_url) as http:
        run_id = fake.create_run("agent-4d0e970e-e87f-4399-be4e-e59a14d631e3")
        clock.now += 2.0
        fake.update_run(run_id, status="completed", stop_reason="end_turn", metrics_delay=1.5)
        listed = http.get("/v1/runs/").json()[0]
        assert listed["status"] == "completed" and listed["completed_at"] is not None
        assert listed["total_duration_ns"] is None
        assert http.get(f"/v1/runs/{run_id}/metrics").json()["run_ns"] is None
        assert http.get(f"/v1/runs/{run_id}/metrics").json()["num_steps"] == 0
        clock.now += 1.5
        assert http.get("/v1/runs/").json()[0]["total_duration_ns"] == 2_000_000_000
        assert http.get(f"/v1/runs/{run_id}/metrics").json()["run_ns"] == 2_000_000_000
        single = http.get(f"/v1/runs/{run_id}").json()
        assert single["total_duration_ns"] is None and single["ttft_ns"] is None
        assert fake.get(run_id)["total_duration_ns"] == 2_000_000_000  # type: ignore[index]


def test_update_run_mimics_run_manager() -> None:
    clock = ManualClock()
    with FakeLetta(clock=clock) as fake, connect(fake.base_url) as http:
        run_id = fake.create_run("agent-a", created_at=clock.now - 1.0)
        fake.update_run(run_id, status="running")
        assert http.get(f"/v1/runs/{run_id}").json()["completed_at"] is None
        fake.update_run(run_id, status="completed", stop_reason="requires_approval")
        first = http.get(f"/v1/runs/{run_id}").json()
        assert first["completed_at"] == "2027-01-15T08:00:00"  # naive, no fraction at .000000
        assert first["created_at"] == "2027-01-15T07:59:59Z"
        clock.now += 5.0
        fake.update_run(run_id, status="cancelled", stop_reason="cancelled")  # cancel later
        second = fake.get(run_id)
        assert second is not None
        assert (second["status"], second["stop_reason"]) == ("cancelled", "cancelled")
        assert second["completed_at"] == first["completed_at"]  # first terminal write only
        assert second["total_duration_ns"] == 6_000_000_000  # recomputed on every write
        fake.update_run(run_id, status="paused", stop_reason="weird_reason", error="boom")
        third = http.get(f"/v1/runs/{run_id}").json()
        assert (third["status"], third["stop_reason"]) == ("paused", "weird_reason")
        assert third["metadata"] == {"run_type": "send_message", "error": "boom"}
        fake.update_run(run_id, status="failed")  # stop_reason left unchanged
        assert fake.get(run_id)["stop_reason"] == "weird_reason"  # type: ignore[index]
        fake.set_callback(run_id, 500, "callback failed")
        fourth = http.get(f"/v1/runs/{run_id}").json()
        assert fourth["callback_sent_at"] == "2027-01-15T08:00:05"
        assert (fourth["callback_status_code"], fourth["callback_error"]) == (
            500,
            "callback failed",
        )
        assert fake.truth() == {("agent-a", "failed", "weird_reason"): 1}


def test_late_commit_appears_behind_the_watermark(fake: FakeLetta, http: httpx.Client) -> None:
    now = time.time()
    old = fake.create_run("agent-a", created_at=now - 60)
    late = fake.create_run("agent-a", created_at=now - 30, visible=False, status="completed")
    new = fake.create_run("agent-a", created_at=now)
    assert ids_of(http.get("/v1/runs/")) == [new, old]
    assert http.get(f"/v1/runs/{late}").status_code == 404
    assert http.get(f"/v1/runs/{late}/metrics").status_code == 404
    # an uncommitted run is no cursor either: the list restarts from the head
    assert ids_of(http.get("/v1/runs/", params={"before": late})) == [new, old]
    assert fake.truth() == {}
    fake.commit(late)
    assert ids_of(http.get("/v1/runs/")) == [new, late, old]
    assert ids_of(http.get("/v1/runs/", params={"before": new, "limit": 1})) == [late]
    assert fake.truth() == {("agent-a", "completed", None): 1}


def test_delete_agent_cascades(fake: FakeLetta, http: httpx.Client) -> None:
    doomed = [fake.create_run("agent-doomed", status="completed") for _ in range(3)]
    kept = fake.create_run("agent-kept", status="failed")
    step = fake.add_step(doomed[0], prompt_tokens=5)
    assert fake.delete_agent("agent-doomed") == 3
    assert ids_of(http.get("/v1/runs/")) == [kept]
    for run_id in doomed:
        assert http.get(f"/v1/runs/{run_id}").status_code == 404
        assert http.get(f"/v1/runs/{run_id}/usage").status_code == 404
    assert http.get(f"/v1/runs/{kept}/steps", params={"after": step}).status_code == 404
    assert fake.truth() == {("agent-kept", "failed", None): 1}
    assert [run["id"] for run in fake.runs()] == [kept]
    # DELETE /v1/runs/{id} is broken in 0.16.8: 500 and nothing deleted (§3.9)
    assert http.delete(f"/v1/runs/{kept}").status_code == 500
    assert http.get(f"/v1/runs/{kept}").status_code == 200
