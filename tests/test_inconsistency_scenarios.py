"""Runs in impossible states and deadlocked threads end to end: the exporter process
against the fake, each kind of `letta_runs_inconsistent_total` from the state it names.

Each case also checks that the run itself is counted as usual (the fake's truth), and
that a healthy mix next to it adds nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on, wait_polls

pytestmark = pytest.mark.e2e

INCONSISTENT = "letta_runs_inconsistent_total"
DEADLOCKED = "letta_conversations_deadlocked"


def kinds(exp: Exporter) -> dict[tuple[str, ...], int]:
    return dict(exp.totals(INCONSISTENT, ("agent", "kind")))


def healthy_mix(fake: FakeLetta) -> None:
    """Ordinary runs, an approval answered, a refusal while it waited, failures."""
    fake.send_message("agent-ok")
    fake.finish_with("agent-ok", "max_steps")
    fake.finish_with("agent-ok", "llm_api_error")
    fake.update_run(fake.create_run("agent-ok"), status="failed", stop_reason=None)
    fake.request_approval("agent-ok", conversation_id="conv-ok")
    fake.send_message("agent-ok", conversation_id="conv-ok")  # 409 while it waits
    fake.answer_approval("agent-ok", conversation_id="conv-ok")


def wait_counted(exp: Exporter, fake: FakeLetta) -> None:
    exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="every run counted")


def test_each_impossible_run_state_is_counted_once_and_the_run_as_usual(tmp_path: Path) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path) as exp:
        healthy_mix(fake)
        no_reason = fake.create_run("agent-a")
        fake.update_run(no_reason, status="completed", stop_reason=None)
        cancelled = fake.create_run("agent-a")
        fake.update_run(cancelled, status="cancelled", stop_reason=None)
        no_time = fake.create_run("agent-b")
        fake.update_run(
            no_time, status="completed", stop_reason="end_turn", without_completed_at=True
        )
        stuck = fake.create_run("agent-c")
        fake.update_run(stuck, status="running", stop_reason="requires_approval")
        want = {
            ("agent-a", "finished_without_stop_reason"): 2,
            ("agent-b", "finished_without_completed_at"): 1,
            ("agent-c", "stop_reason_while_open"): 1,
        }
        exp.wait_for(lambda: kinds(exp) == want, what="each impossible state counted")
        wait_counted(exp, fake)
        wait_polls(exp, 3)  # re-reads of the same runs count nothing again
        assert kinds(exp) == want
        assert exp.value("letta_runs_in_progress", agent="agent-c") == 1
        # Its end written at last: counted as a run, not again as inconsistent.
        fake.update_run(stuck, status="completed", stop_reason="end_turn")
        wait_counted(exp, fake)
        assert kinds(exp) == want
        assert exp.value(DEADLOCKED) == 0


def test_a_cancelled_conversation_approval_deadlocks_it_until_answered(tmp_path: Path) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path) as exp:
        healthy_mix(fake)
        waiting = fake.request_approval("agent-d", conversation_id="conv-1")
        exp.wait_for(lambda: exp.value("letta_runs_awaiting_approval", agent="agent-d") == 1)
        assert fake.cancel_run(waiting) == "cancelled"
        exp.wait_for(lambda: exp.value("letta_runs_awaiting_approval", agent="agent-d") == 0)
        for _ in range(2):
            assert fake.send_message("agent-d", conversation_id="conv-1")[0] == 409
        assert fake.orphaned_approvals() == {("agent-d", "conv-1"): waiting}
        exp.wait_for(
            lambda: exp.value(DEADLOCKED, agent="agent-d") == 1, what="the deadlock to show"
        )
        exp.wait_for(
            lambda: kinds(exp) == {("agent-d", "refused_without_wait"): 2},
            what="both refusals counted",
        )
        wait_counted(exp, fake)
        assert exp.value("letta_runs_awaiting_approval") == 0
        # Someone denies the orphaned request: accepted, the conversation works again.
        fake.answer_approval("agent-d", conversation_id="conv-1", approve=False)
        exp.wait_for(lambda: exp.value(DEADLOCKED) == 0, what="the deadlock to clear")
        assert fake.send_message("agent-d", conversation_id="conv-1")[0] == 200
        wait_counted(exp, fake)
        assert kinds(exp) == {("agent-d", "refused_without_wait"): 2}


def test_a_refusal_while_the_request_waits_is_no_deadlock_after_a_restart(
    tmp_path: Path,
) -> None:
    with FakeLetta() as fake:
        with exporter_on(fake.base_url, tmp_path) as exp:
            fake.request_approval("agent-e", conversation_id="conv-1")
            assert fake.send_message("agent-e", conversation_id="conv-1")[0] == 409
            wait_counted(exp, fake)
            assert exp.terminate() == 0
        assert fake.send_message("agent-e", conversation_id="conv-1")[0] == 409
        with exporter_on(fake.base_url, tmp_path) as exp:
            wait_counted(exp, fake)
            wait_polls(exp, 3)
            assert exp.value("letta_runs_awaiting_approval", agent="agent-e") == 1
            assert exp.value(DEADLOCKED) == 0
            assert kinds(exp) == {}


def test_cloud_stop_reasons_are_counted_under_their_own_label(tmp_path: Path) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path) as exp:
        for reason in (
            "insufficient_credits",
            "context_window_overflow_in_system_prompt",
            "max_tokens_exceeded",
        ):
            fake.finish_with("agent-f", reason)
        wait_counted(exp, fake)
        assert exp.finished() == {
            ("agent-f", "failed", "insufficient_credits"): 1,
            ("agent-f", "failed", "context_window_overflow_in_system_prompt"): 1,
            ("agent-f", "failed", "max_tokens_exceeded"): 1,
        }
        assert kinds(exp) == {}
