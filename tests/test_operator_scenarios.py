"""What an operator reads: agents by name, failures by error type, runs by API path.

The real exporter process against the fake Letta API, errors and paths shaped on the
0.16.8 fixtures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on

pytestmark = pytest.mark.e2e


def info(exporter: Exporter) -> dict[str, str]:
    """agent -> agent_name of every letta_agent_info sample."""
    return {
        dict(labels)["agent"]: dict(labels)["agent_name"]
        for (name, labels), value in exporter.samples().items()
        if name == "letta_agent_info" and value == 1
    }


def finish(fake: FakeLetta, agent: str, status: str, stop_reason: str | None, **run: object) -> str:
    run_id = fake.create_run(agent, **run)  # type: ignore[arg-type]
    fake.update_run(run_id, status=status, stop_reason=stop_reason)
    return run_id


def test_agents_are_named_and_an_agent_without_a_name_keeps_its_id(tmp_path: Path) -> None:
    with FakeLetta() as fake:
        named = fake.add_agent("support-bot")
        unnamed = "agent-00000000-0000-4000-8000-00000000dead"  # deleted: no longer listed
        with exporter_on(fake.base_url, tmp_path) as exp:
            finish(fake, named, "completed", "end_turn")
            finish(fake, unnamed, "completed", "end_turn")
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="totals")
            exp.wait_for(lambda: info(exp) == {named: "support-bot"}, what="agent info")
            # A new agent is named a few cycles after its first run is seen.
            newcomer = fake.add_agent("billing assistant ✓")
            finish(fake, newcomer, "completed", "end_turn")
            exp.wait_for(
                lambda: info(exp) == {named: "support-bot", newcomer: "billing assistant ✓"},
                what="the newcomer's name",
            )
        agent_requests = [q for _, path, q, _ in fake.requests if path == "/v1/agents/"]
        assert agent_requests
        assert all(q["include_relationships"] == [""] for q in agent_requests)


def test_names_can_be_turned_off(tmp_path: Path) -> None:
    with FakeLetta() as fake:
        agent = fake.add_agent("Jane Doe's assistant")
        args = ("--agents.names=false",)
        with exporter_on(fake.base_url, tmp_path, *args) as exp:
            finish(fake, agent, "completed", "end_turn")
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="totals")
            assert info(exp) == {}
        assert not [path for _, path, _, _ in fake.requests if path == "/v1/agents/"]


def test_failures_by_error_type_add_up_to_the_failing_runs(tmp_path: Path) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path) as exp:
        agent = "agent-a"
        # Shapes of runs/*/run.json and steps.json in the fixtures.
        sync_500 = fake.create_run(agent)
        fake.add_step(
            sync_500, status="failed", stop_reason="llm_api_error", error_type="LLMServerError"
        )
        fake.update_run(
            sync_500,
            status="failed",
            stop_reason=None,
            error="INTERNAL_SERVER_ERROR: OpenAI API error: Error code: 500 - {'error': …}",
        )
        refused = fake.create_run(agent)
        fake.update_run(
            refused,
            status="failed",
            stop_reason=None,
            error="CONFLICT: Cannot send a new message: The agent is waiting for approval",
        )
        stream_429 = fake.create_run(agent, run_type="send_message_streaming")
        fake.update_run(
            stream_429,
            status="failed",
            stop_reason="llm_api_error",
            error={
                "message_type": "error_message",
                "error_type": "llm_rate_limit",
                "message": "Rate limit exceeded",
            },
        )
        finish(fake, agent, "completed", "max_tokens_exceeded", run_type="send_message_streaming")
        finish(fake, agent, "completed", "end_turn", run_type="send_message_async", background=True)
        finish(fake, agent, "cancelled", "cancelled")
        exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="totals")
        assert exp.totals("letta_runs_failed_total", ("error_type",)) == {
            ("llm_server_error",): 1,
            ("conflict",): 1,
            ("llm_rate_limit",): 1,
            ("none",): 1,  # completed / max_tokens_exceeded: no error recorded
        }
        assert exp.totals("letta_runs_finished_by_path_total", ("run_type", "background")) == {
            ("send_message", "false"): 3,
            ("send_message_streaming", "false"): 2,
            ("send_message_async", "true"): 1,
        }
        # Never message text in a label.
        assert "Rate limit exceeded" not in exp.metrics_text()
        assert "OpenAI" not in exp.metrics_text()
