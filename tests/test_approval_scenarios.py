"""Pending approvals end to end: the real exporter process against the fake's lifecycle.

Each case drives the fake the way a client drives Letta 0.16.8 (request, approve, deny,
cancel, a message refused with 409, conversations, a restart) and compares
`letta_runs_awaiting_approval` with the fake's own record of what waits.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from exporter.letta.models import to_epoch_ns
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on, running, wait_polls

pytestmark = pytest.mark.e2e

WAITING = "letta_runs_awaiting_approval"
SINCE = "letta_run_oldest_awaiting_approval_timestamp_seconds"
STATE_FIXTURES = Path(__file__).parent / "fixtures" / "state"


def exported_waits(exp: Exporter) -> Counter[str]:
    """letta_runs_awaiting_approval by agent."""
    waits: Counter[str] = Counter()
    for (name, labels), value in exp.samples().items():
        if name == WAITING:
            waits[dict(labels)["agent"]] += int(value)
    return +waits


def truth(fake: FakeLetta) -> Counter[str]:
    return Counter(agent for agent, _ in fake.pending_approvals())


def since_s(fake: FakeLetta, run_id: str) -> float:
    run = fake.get(run_id)
    assert run is not None
    return to_epoch_ns(datetime.fromisoformat(run["completed_at"])) / 1e9


def wait_counted(exp: Exporter, fake: FakeLetta) -> None:
    """Every run the fake finished is counted: the exporter has seen them all."""
    exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="every run counted")


def wait_matches(exp: Exporter, fake: FakeLetta, what: str) -> None:
    exp.wait_for(lambda: exported_waits(exp) == truth(fake), what=what)


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "deny"])
def test_an_answer_ends_the_wait_and_a_wait_is_never_stuck(approve: bool, tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path, "--runs.stale-after=1s") as exp,
    ):
        waiting = fake.request_approval("agent-a")
        wait_matches(exp, fake, "the approval to wait")
        assert exported_waits(exp) == {"agent-a": 1}
        assert exp.value(SINCE, agent="agent-a") == pytest.approx(since_s(fake, waiting))
        wait_polls(exp, 9)
        # Older than --runs.stale-after and still only an approval wait.
        assert exp.value("letta_runs_stale") == exp.value("letta_runs_in_progress") == 0
        fake.answer_approval("agent-a", approve=approve)
        wait_matches(exp, fake, "the answer to end the wait")
        assert exp.value(SINCE) == 0
        wait_counted(exp, fake)


def test_a_continuation_still_working_is_not_a_wait(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path) as exp,
    ):
        fake.request_approval("agent-a")
        wait_matches(exp, fake, "the approval to wait")
        working = fake.answer_approval("agent-a", finish=False)
        exp.wait_for(lambda: exp.value("letta_runs_in_progress", agent="agent-a") == 1)
        assert exported_waits(exp) == {}
        fake.update_run(working, status="completed", stop_reason="end_turn")
        wait_counted(exp, fake)
        assert exported_waits(exp) == {}


def test_cancelling_the_counted_waiting_run_ends_the_wait(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path) as exp,
    ):
        waiting = fake.request_approval("agent-a")
        wait_counted(exp, fake)  # counted as completed/requires_approval
        assert exported_waits(exp) == {"agent-a": 1}
        assert fake.cancel_run(waiting) == "cancelled"
        wait_matches(exp, fake, "the cancel to end the wait")
        exp.wait_for(
            lambda: exp.value("letta_exporter_runs_changed_after_count_total") == 1,
            what="the flip of a counted run to be reported",
        )


def test_a_message_refused_with_409_leaves_the_approval_waiting(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path) as exp,
    ):
        waiting = fake.request_approval("agent-a")
        wait_matches(exp, fake, "the approval to wait")
        assert fake.send_message("agent-a")[0] == 409
        assert fake.send_message("agent-a")[0] == 409
        # Both refused runs counted (failed, no stop reason) means the exporter saw them.
        exp.wait_for(
            lambda: exp.finished().get(("agent-a", "failed", "none")) == 2,
            what="the refused runs to be counted",
        )
        assert exported_waits(exp) == {"agent-a": 1} == truth(fake)
        assert exp.value(SINCE, agent="agent-a") == pytest.approx(since_s(fake, waiting))
        fake.answer_approval("agent-a")
        wait_matches(exp, fake, "the approval to end the wait")


def test_an_ordinary_failed_run_without_stop_reason_answers_the_wait(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path) as exp,
    ):
        fake.request_approval("agent-a")
        wait_matches(exp, fake, "the approval to wait")
        # The approval was accepted, then the LLM failed (sync path: failed, null).
        answer = fake.answer_approval("agent-a", finish=False)
        fake.update_run(answer, status="failed", stop_reason=None, error="INTERNAL_SERVER_ERROR")
        wait_counted(exp, fake)
        assert exported_waits(exp) == {}


def test_each_conversation_waits_on_its_own(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path) as exp,
    ):
        first = fake.request_approval("agent-a", conversation_id="conv-1")
        fake.request_approval("agent-a", conversation_id="conv-2")
        fake.request_approval("agent-b")
        assert fake.send_message("agent-a")[0] == 200  # the agent's own thread is free
        assert fake.send_message("agent-a", conversation_id="conv-1")[0] == 409
        wait_counted(exp, fake)
        assert exported_waits(exp) == {"agent-a": 2, "agent-b": 1} == truth(fake)
        assert exp.value(SINCE, agent="agent-a") == pytest.approx(since_s(fake, first))
        fake.answer_approval("agent-a", conversation_id="conv-1")
        wait_matches(exp, fake, "conv-1's answer to leave conv-2 waiting")
        assert exported_waits(exp) == {"agent-a": 1, "agent-b": 1}


def test_a_wait_survives_a_restart_and_the_lookback_window(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    # The run below appears 30 s old: a late commit, inside a 1 minute lookback. After the
    # restart a 1 s lookback leaves it outside the re-read window.
    args = ("--poll.lookback=1s",)
    with FakeLetta() as fake:
        with running(Exporter(fake.base_url, state, "--poll.lookback=1m")) as exp:
            exp.wait_ready()
            # Asked 30 s ago: runs arriving later leave it outside the 1 s window.
            waiting = fake.request_approval(
                "agent-a",
                conversation_id="conv-1",
                created_at=time.time() - 30,
                completed_at=time.time() - 29,
            )
            wait_counted(exp, fake)
            assert exported_waits(exp) == {"agent-a": 1}
            assert exp.terminate() == 0
        # While the exporter is down, newer runs push the wait out of the re-read window.
        for _ in range(3):
            fake.send_message("agent-b")
        with running(Exporter(fake.base_url, state, *args)) as exp:
            exp.wait_ready()
            wait_counted(exp, fake)
            assert exported_waits(exp) == {"agent-a": 1}
            assert exp.value(SINCE, agent="agent-a") == pytest.approx(since_s(fake, waiting))
            # Beyond the window only a GET of the waiting run can show a cancel.
            exp.wait_for(
                lambda: any(path == f"/v1/runs/{waiting}" for _, path, _, _ in fake.requests),
                what="the waiting run to be fetched",
            )
            fake.cancel_run(waiting)
            wait_matches(exp, fake, "the cancel beyond the window to end the wait")


def test_a_state_file_of_the_previous_release_loads_and_knows_its_waits(tmp_path: Path) -> None:
    """tests/fixtures/state: written by the exporter of commit c38e041 (before approvals
    were tracked) with make_state_c38e041.py, next to the runs its fake held."""
    state = tmp_path / "s.sqlite"
    shutil.copy(STATE_FIXTURES / "state_c38e041.sqlite", state)
    runs = json.loads((STATE_FIXTURES / "runs_c38e041.json").read_text())
    with FakeLetta() as fake:
        for run in reversed(runs):  # oldest first
            fake.create_run(
                run["agent_id"],
                run_id=run["id"],
                created_at=run["created_at"],
                conversation_id=run["conversation_id"],
            )
            fake.update_run(
                run["id"],
                status=run["status"],
                stop_reason=run["stop_reason"],
                completed_at=run["completed_at"] + "Z",
                error=run["metadata"].get("error"),
            )
        with running(Exporter(fake.base_url, state)) as exp:
            exp.wait_ready()
            # The counters came through and nothing was counted twice.
            assert exp.finished() == expected(fake.truth())
            assert exported_waits(exp) == {"agent-upgrade": 1, "agent-conv": 1}
            waiting = next(
                r["id"]
                for r in runs
                if r["agent_id"] == "agent-upgrade" and r["stop_reason"] == "requires_approval"
            )
            assert exp.value(SINCE, agent="agent-upgrade") == pytest.approx(since_s(fake, waiting))
            wait_polls(exp, 4)
            assert exp.finished() == expected(fake.truth())
            assert exported_waits(exp) == {"agent-upgrade": 1, "agent-conv": 1}
            # The fake's own book does not know these waits: its next message answers.
            assert fake.send_message("agent-upgrade")[0] == 200
            exp.wait_for(
                lambda: exported_waits(exp) == {"agent-conv": 1}, what="the answer to count"
            )


def test_a_first_start_finds_waits_older_than_its_first_scan(tmp_path: Path) -> None:
    long_ago = time.time() - 7200
    with FakeLetta() as fake:
        old_wait = fake.request_approval("agent-a", created_at=long_ago, completed_at=long_ago + 1)
        fake.request_approval("agent-b", created_at=long_ago + 2, completed_at=long_ago + 3)
        fake.answer_approval("agent-b")  # answered long ago as well ...
        fake.request_approval("agent-c", conversation_id="conv-1", created_at=long_ago + 4)
        fake.send_message("agent-c", conversation_id="conv-1")  # ... this one refused
        fake.send_message("agent-c")  # the agent's own thread: answers nothing in conv-1
        fake.request_approval("agent-e", created_at=long_ago + 6, completed_at=long_ago + 7)
        fake.answer_approval("agent-e", finish=False)  # approved: the agent is still working
        for _ in range(3):
            fake.send_message("agent-d")  # the newest runs: the first scan stops at these
        with exporter_on(fake.base_url, tmp_path) as exp:
            wait_matches(exp, fake, "the old waits to be found")
            assert exported_waits(exp) == {"agent-a": 1, "agent-c": 1}
            assert exp.value(SINCE, agent="agent-a") == pytest.approx(since_s(fake, old_wait))
            assert exp.finished() == {}, "history before the first start is still not counted"
            seeding = [q for _, _, q, _ in fake.requests if q.get("stop_reason")]
            assert len(seeding) == 1
            assert exp.terminate() == 0
        fake.reset_requests()
        with exporter_on(fake.base_url, tmp_path) as exp:
            assert exported_waits(exp) == {"agent-a": 1, "agent-c": 1}
            assert not [q for _, _, q, _ in fake.requests if q.get("stop_reason")], "only once"


def test_a_wait_inside_the_window_costs_no_request(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path) as exp,
    ):
        fake.request_approval("agent-a")
        fake.request_approval("agent-a", conversation_id="conv-1")
        wait_counted(exp, fake)
        wait_matches(exp, fake, "both waits")
        fake.reset_requests()
        wait_polls(exp, 11)
        # The head page of every cycle, nothing else: the scan re-reads the waiting runs.
        assert {(path, tuple(sorted(query))) for _, path, query, _ in fake.requests} == {
            ("/v1/runs/", ("limit", "order"))
        }
        assert exported_waits(exp) == {"agent-a": 2}
