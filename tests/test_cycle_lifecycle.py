"""The life of a run through the poll cycle, in-process: when it is counted, and once.

Each test drives the cycle with a mocked Letta API and a fake clock (tests/cycle_rig.py)
and checks what an operator sees: the /metrics text and the requests made.
"""

from __future__ import annotations

from pathlib import Path

from tests.cycle_rig import CycleRig, open_rig

FINISHED = "letta_runs_finished_total"


async def first_start(rig: CycleRig) -> None:
    """The first cycle of a fresh state on an idle Letta: nothing to count yet."""
    assert await rig.cycle()
    assert rig.metrics().value(FINISHED) == 0


async def test_history_before_the_first_start_is_never_counted(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        rig.letta.finished("agent-a")
        rig.letta.finished("agent-b", status="failed", stop_reason="llm_api_error")
        rig.advance(1)
        await rig.cycle()
        await rig.cycles(5, every=15)
        assert rig.metrics().value(FINISHED) == 0


async def test_a_finished_run_is_counted_only_after_its_grace_period(tmp_path: Path) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        await first_start(rig)
        rig.advance(15)
        rig.letta.finished("agent-a")
        await rig.cycle()
        assert rig.metrics().value(FINISHED) == 0
        rig.advance(4)
        await rig.cycle()
        assert rig.metrics().value(FINISHED) == 0
        rig.advance(2)
        await rig.cycle()
        samples = rig.metrics()
        assert samples.value(FINISHED, agent="agent-a", status="completed") == 1
        assert samples.value("letta_run_duration_seconds_count", agent="agent-a") == 1


async def test_a_status_change_within_the_grace_period_is_what_gets_counted(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        await first_start(rig)
        rig.advance(15)
        run = rig.letta.finished("agent-a", status="failed", stop_reason=None)
        await rig.cycle()
        rig.advance(2)
        # A failure's stop reason is written after its status (letta-runs-api.md §5).
        rig.letta.update_run(run, status="failed", stop_reason="llm_api_error")
        await rig.cycles(2, every=5)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 1
        assert samples.value(FINISHED, status="failed", stop_reason="llm_api_error") == 1


async def test_a_run_seen_running_then_finished_is_counted_once(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await first_start(rig)
        rig.advance(15)
        run = rig.letta.running("agent-a")
        await rig.cycle()
        samples = rig.metrics()
        assert samples.value("letta_runs_in_progress", agent="agent-a", status="running") == 1
        assert samples.value(FINISHED) == 0
        rig.advance(15)
        rig.letta.update_run(run, status="completed", stop_reason="end_turn")
        await rig.cycles(10, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED, agent="agent-a") == 1
        assert samples.value("letta_runs_in_progress") == 0


async def test_a_run_with_a_callback_url_waits_for_its_callback_result(tmp_path: Path) -> None:
    async with open_rig(tmp_path, runs_grace_period=5, runs_callback_wait=30) as rig:
        await first_start(rig)
        rig.advance(15)
        run = rig.letta.finished(
            "agent-a", callback_url="http://hooks.test/done", run_type="send_message_async"
        )
        await rig.cycles(2, every=6)  # past the grace period, within the callback wait
        assert rig.metrics().value(FINISHED) == 0
        rig.letta.set_callback(run, status_code=200)
        await rig.cycles(1, every=6)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 1
        assert samples.value("letta_run_callbacks_total", agent="agent-a", result="success") == 1


async def test_a_callback_that_never_arrives_is_counted_unknown_after_the_callback_wait(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, runs_grace_period=5, runs_callback_wait=30) as rig:
        await first_start(rig)
        rig.advance(15)
        rig.letta.finished("agent-a", callback_url="http://hooks.test/done")
        await rig.cycles(4, every=6)  # 24 s: still waiting
        assert rig.metrics().value(FINISHED) == 0
        await rig.cycles(2, every=6)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 1
        assert samples.value("letta_run_callbacks_total", result="unknown") == 1


async def test_a_run_changed_after_it_was_counted_is_reported_not_recounted(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path) as rig:
        await first_start(rig)
        rig.advance(15)
        run = rig.letta.finished("agent-a")
        await rig.cycles(2, every=15)
        assert rig.metrics().value(FINISHED, status="completed") == 1
        rig.letta.update_run(run, status="cancelled", stop_reason="cancelled")
        await rig.cycles(2, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 1
        assert samples.value(FINISHED, status="cancelled") == 0
        assert samples.value("letta_exporter_runs_changed_after_count_total") == 1


async def test_a_late_committed_run_is_counted_once_and_reported_late(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await first_start(rig)
        rig.advance(15)
        hidden = rig.letta.create_run("agent-a", visible=False)  # created now, committed later
        rig.advance(5)
        rig.letta.finished("agent-b", took=1)
        await rig.cycles(2, every=15)
        assert rig.metrics().value(FINISHED) == 1
        rig.letta.commit(hidden)
        rig.letta.update_run(hidden, status="completed", stop_reason="end_turn")
        await rig.cycles(3, every=15)
        samples = rig.metrics()
        assert samples.value("letta_exporter_late_runs_total") == 1
        assert samples.value(FINISHED, agent="agent-a") == 1
        assert samples.value(FINISHED) == 2


async def test_a_followed_run_that_answers_404_is_counted_as_deleted(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await first_start(rig)
        rig.advance(15)
        run = rig.letta.running("agent-a")
        await rig.cycle()
        rig.letta.delete_run(run)
        await rig.cycles(2, every=15)
        samples = rig.metrics()
        assert samples.value("letta_runs_deleted_total", agent="agent-a") == 1
        assert samples.value("letta_runs_in_progress") == 0
        assert samples.value(FINISHED) == 0
        asked = rig.letta.count_requests(f"/v1/runs/{run}$")
        await rig.cycles(3, every=15)
        assert rig.letta.count_requests(f"/v1/runs/{run}$") == asked  # no longer followed


async def test_a_finished_run_deleted_in_its_grace_period_is_counted_with_what_was_seen(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        await first_start(rig)
        rig.advance(15)
        run = rig.letta.finished("agent-a")
        await rig.cycle()
        rig.letta.delete_run(run)
        await rig.cycles(2, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED, agent="agent-a", status="completed") == 1
        assert samples.value("letta_runs_deleted_total") == 0
        # Its steps, usage and metrics went with it.
        failures = samples.series("letta_exporter_enrichment_failures_total")
        assert failures == {
            (("endpoint", "metrics"),): 1,
            (("endpoint", "steps"),): 1,
            (("endpoint", "usage"),): 1,
        }
