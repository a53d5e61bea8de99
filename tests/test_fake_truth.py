"""Ground truth (tests/fake_letta/truth.py) counts only visible finished runs."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fake_checks import ManualClock
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_truths_cover_only_visible_finished_runs() -> None:
    clock = ManualClock()
    with FakeLetta(clock=clock) as fake:
        search = fake.add_tool("web_search")
        recall = fake.add_tool("archival_search", tool_type="letta_core")
        ghost = "tool-0001"  # never registered: counted by id
        done = fake.create_run("agent-a", status="running")
        fake.add_step(done, prompt_tokens=10, completion_tokens=1, tool_ids=[search, ghost])
        fake.add_step(done, prompt_tokens=20, completion_tokens=2, tool_ids=[search, recall])
        fake.update_run(done, status="completed", stop_reason="end_turn")
        other = fake.create_run("agent-b", status="running")
        fake.add_step(other, model="anthropic/claude-3", prompt_tokens=5, tool_ids=[search])
        fake.update_run(other, status="failed", stop_reason="llm_api_error", metrics_delay=5.0)
        running = fake.create_run("agent-a", status="running")
        fake.add_step(running, prompt_tokens=99, tool_ids=[search])
        late = fake.create_run("agent-a", visible=False)
        fake.add_step(late, prompt_tokens=77, tool_ids=[search])
        fake.update_run(late, status="completed")
        legacy = fake.create_run("agent-c", has_metrics=False)
        fake.add_step(legacy, prompt_tokens=1, tool_ids=[search])
        fake.update_run(legacy, status="completed")

        assert fake.step_count_truth() == {done: 2, other: 1, legacy: 1}
        assert fake.token_truth() == Counter(
            {
                ("agent-a", "fake-llm", "input"): 30,
                ("agent-a", "fake-llm", "output"): 3,
                ("agent-b", "claude-3", "input"): 5,  # no "output": it was 0
                ("agent-c", "fake-llm", "input"): 1,
            }
        )
        # once per run per distinct id; agent-b's metrics are not committed yet and
        # agent-c's run has no metrics row at all
        assert fake.tool_truth() == Counter(
            {("agent-a", "web_search"): 1, ("agent-a", "archival_search"): 1, ("agent-a", ghost): 1}
        )
        clock.now += 5.0
        assert fake.tool_truth()[("agent-b", "web_search")] == 1
        fake.commit(late)
        fake.delete_tool(search)  # now answers 404: the id is the best name
        truth = fake.tool_truth()
        assert truth[("agent-a", search)] == 2 and truth[("agent-a", "web_search")] == 0
        assert fake.token_truth()[("agent-a", "fake-llm", "input")] == 107
