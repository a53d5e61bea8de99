"""The states behind the new alerts, produced by the real Letta 0.16.8 server.

A conversation's approval request cancelled (letta issue 3176: 0.16.8's cancel cleans up
only the agent's own thread) and the next message refused: the exporter shows the
conversation deadlocked and counts the refusal once, until a denial unblocks it. A loop
stopped by max_steps is counted under its stop reason (the "hit a limit" group). An agent
whose system prompt outgrew its context window overflows the way
letta:runs_context_overflow:increase15m reads it (streams by stop reason, the sync path by
error type).
0.16.8 cannot produce insufficient_credits (its credit check always passes); those and
the other Cloud-only states are covered on the fake (tests/test_inconsistency_scenarios.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import exporter_on
from tests.realserver.stack import Stack
from tests.realserver.workload import Workload

pytestmark = [pytest.mark.e2e, pytest.mark.letta_server, pytest.mark.timeout(900)]

# A loaded 2-core machine takes seconds per step.
WAIT_S = 180.0


def test_a_cancelled_conversation_approval_deadlocks_it_until_denied(
    letta_stack: Stack, tmp_path: Path
) -> None:
    work = Workload(letta_stack)
    try:
        with exporter_on(letta_stack.letta_url, tmp_path, "--poll.interval=1s") as exp:
            limited = work.agent("max-steps")
            work.sync(limited, "forever [[loop]]", max_steps=3)

            agent, conversation, call_id = work.lane_conversation_deadlock()
            exp.wait_for(
                lambda: exp.value("letta_conversations_deadlocked", agent=agent) == 1,
                WAIT_S,
                "the conversation to show deadlocked",
            )
            exp.wait_for(
                lambda: (
                    exp.totals("letta_runs_inconsistent_total", ("agent", "kind"))
                    == {(agent, "refused_without_wait"): 1}
                ),
                WAIT_S,
                "the refusal to be counted once",
            )
            # The request, cancelled, and the refusal: counted as runs besides.
            exp.wait_for(
                lambda: exp.finished(("agent",))[(agent,)] == 2,
                WAIT_S,
                "the deadlocked conversation's runs to be counted",
            )
            finished = exp.finished()
            assert finished[(agent, "cancelled", "cancelled")] == 1
            assert finished[(agent, "failed", "error")] == 1
            assert exp.value("letta_runs_awaiting_approval", agent=agent) == 0
            exp.wait_for(
                lambda: exp.finished()[(limited, "completed", "max_steps")] == 1,
                WAIT_S,
                "the max_steps run to be counted",
            )
            hog = work.lane_context_overflow()
            exp.wait_for(
                lambda: exp.finished(("agent",))[(hog,)] == 3,
                WAIT_S,
                "the overflowing agent's runs to be counted",
            )
            overflowed = {k: v for k, v in exp.finished().items() if k[0] == hog}
            assert overflowed == {
                (hog, "completed", "context_window_overflow_in_system_prompt"): 2,
                (hog, "failed", "none"): 1,
            }
            failed = exp.totals("letta_runs_failed_total", ("agent", "error_type"))
            assert failed[(hog, "context_window_exceeded")] == 1
            work.deny_in_conversation(conversation, call_id)
            exp.wait_for(
                lambda: exp.value("letta_conversations_deadlocked") == 0,
                WAIT_S,
                "the denial to clear the deadlock",
            )
            assert exp.totals("letta_runs_inconsistent_total", ("agent", "kind")) == {
                (agent, "refused_without_wait"): 1
            }
    finally:
        work.close()
