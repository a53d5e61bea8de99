"""`letta-exporter check`: one look at recent runs, with exit codes a CI job can use."""

from __future__ import annotations

import json
import socket
import time

import pytest

from exporter.cli.check import percentile
from tests.fake_letta.constants import Backend
from tests.fake_letta.fake import FakeLetta
from tests.harness import check


def finish(fake: FakeLetta, agent: str, status: str, stop_reason: str) -> str:
    run_id = fake.create_run(agent)
    fake.update_run(run_id, status="running")
    fake.update_run(run_id, status=status, stop_reason=stop_reason)
    return run_id


def test_a_clean_window_exits_0_with_a_table() -> None:
    with FakeLetta() as fake:
        for _ in range(3):
            finish(fake, "agent-a", "completed", "end_turn")
        fake.create_run("agent-b")  # still open: listed, not a failure
        result = check(f"--letta.url={fake.base_url}", "--since=1h")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "AGENT", "STATUS", "STOP_REASON", "RUNS", "P50", "P95", "P99", "TTFT_P50", "TTFT_P95"
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["agent-a", "completed", "end_turn", "3"]
    assert lines[2].split()[:4] == ["agent-b", "created", "-", "1"]
    assert lines[-1] == "4 runs in the last 1h, 0 failed"


def test_a_failed_run_exits_1_and_json_says_which() -> None:
    with FakeLetta() as fake:
        finish(fake, "agent-a", "completed", "end_turn")
        finish(fake, "agent-b", "failed", "llm_api_error")
        # Letta can mark a run completed with a failing stop reason: still a failure.
        finish(fake, "agent-c", "completed", "llm_api_error")
        result = check(f"--letta.url={fake.base_url}", "--output=json")
        only_a = check(f"--letta.url={fake.base_url}", "--agent=agent-a")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["runs"], summary["failed_runs"]) == (3, 2)
    failed = {(g["agent"], g["stop_reason"]) for g in summary["groups"] if g["failed"]}
    assert failed == {("agent-b", "llm_api_error"), ("agent-c", "llm_api_error")}
    durations = summary["groups"][0]["duration_seconds"]
    assert set(durations) == {"p50", "p95", "p99"}
    assert only_a.returncode == 0, only_a.stdout + only_a.stderr


def test_runs_older_than_the_window_are_left_out() -> None:
    with FakeLetta() as fake:
        old = fake.create_run("agent-old", created_at=time.time() - 7200)
        fake.update_run(old, status="failed", stop_reason="error")
        finish(fake, "agent-a", "completed", "end_turn")
        result = check(f"--letta.url={fake.base_url}", "--since=30m", "--output=json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["runs"] == 1


def test_an_unreachable_server_or_bad_usage_exits_2() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    result = check(f"--letta.url=http://127.0.0.1:{port}", "--letta.timeout=1s")
    assert result.returncode == 2
    assert "cannot read runs from" in result.stderr
    assert check("--since=soon").returncode == 2
    assert check("--output=xml").returncode == 2


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ((), 0.5, None),
        ((1.0,), 0.99, 1.0),
        ((1.0, 2.0, 3.0, 4.0), 0.5, 2.0),
        ((1.0, 2.0), 0.95, 2.0),
    ],
)
def test_percentiles_are_nearest_rank(
    values: tuple[float, ...], q: float, expected: float | None
) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_check_counts_every_run_of_a_burst_on_relative_silent_cursors(backend: Backend) -> None:
    # Cursors relative to the order that silently ignore an unknown cursor, 30 % of the
    # burst sharing the newest timestamp: check walks with the exporter's pager and so
    # finds the direction from the pages themselves.
    with FakeLetta(semantics="relative", unknown_cursor="ignore", backend=backend) as fake:
        ids = fake.finish_burst(600, ["agent-a", "agent-b"], shared_fraction=0.3, spread_s=3.0)
        result = check(f"--letta.url={fake.base_url}", "--letta.page-size=50", "--output=json")
    assert result.returncode == 1, result.stderr  # the burst has failed runs
    summary = json.loads(result.stdout)
    assert summary["runs"] == len(ids) == 600
    assert summary["runs"] == sum(fake.truth().values())
