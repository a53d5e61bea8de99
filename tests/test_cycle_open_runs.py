"""Open runs through the poll cycle, in-process: followed, stale, forgotten, capped.

See tests/cycle_rig.py for the mocked Letta API and the fake clock.
"""

from __future__ import annotations

from pathlib import Path

from tests.cycle_rig import CycleRig, open_rig

IN_PROGRESS = "letta_runs_in_progress"
DROPPED = "letta_exporter_open_runs_dropped_total"


async def follow_out_of_window(rig: CycleRig) -> str:
    """An open run that newer runs have pushed below the window the scans re-read, so
    only a GET of its own tells how it is doing. Returns its id."""
    assert await rig.cycle()  # first start
    rig.advance(15)
    run = rig.letta.running("agent-a")
    await rig.cycle()
    rig.advance(60)
    rig.letta.finished("agent-b", took=1)
    await rig.cycles(2, every=15)
    return run


async def test_an_open_run_out_of_the_scanned_window_is_fetched_every_cycle(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, poll_lookback=30) as rig:
        run = await follow_out_of_window(rig)
        asked = rig.letta.count_requests(f"/v1/runs/{run}$")
        await rig.cycles(10, every=15)
        assert rig.letta.count_requests(f"/v1/runs/{run}$") == asked + 10
        rig.letta.update_run(run, status="completed", stop_reason="end_turn")
        await rig.cycles(2, every=15)
        samples = rig.metrics()
        assert samples.value("letta_runs_finished_total", agent="agent-a") == 1
        assert samples.value(IN_PROGRESS) == 0


async def test_a_stale_open_run_is_fetched_once_per_stale_refresh_period(tmp_path: Path) -> None:
    # --runs.stale-after 600 s; stale runs are looked at every max(interval, 300 s).
    async with open_rig(tmp_path, poll_lookback=30, runs_stale_after=600) as rig:
        run = await follow_out_of_window(rig)
        await rig.cycles(10, every=60)  # 600 s more: the run is stale now
        samples = rig.metrics()
        assert samples.value("letta_runs_stale", agent="agent-a") == 1
        assert samples.value(IN_PROGRESS) == 0  # a zombie is not work in progress
        asked = rig.letta.count_requests(f"/v1/runs/{run}$")
        await rig.cycles(20, every=30)  # 600 s: two refresh periods
        assert rig.letta.count_requests(f"/v1/runs/{run}$") - asked == 2
        # A stale run that finishes is still counted (within one refresh period).
        rig.letta.update_run(run, status="completed", stop_reason="end_turn")
        await rig.cycles(11, every=30)
        samples = rig.metrics()
        assert samples.value("letta_runs_finished_total", agent="agent-a") == 1
        assert samples.value("letta_runs_stale") == 0


async def test_an_open_run_older_than_the_forget_horizon_is_dropped_as_expired(
    tmp_path: Path,
) -> None:
    async with open_rig(
        tmp_path, poll_lookback=30, runs_stale_after=600, runs_forget_after=1800
    ) as rig:
        run = await follow_out_of_window(rig)
        await rig.cycles(30, every=60)  # 30 min
        samples = rig.metrics()
        assert samples.value(DROPPED, reason="expired") == 1
        assert samples.value(IN_PROGRESS) + samples.value("letta_runs_stale") == 0
        asked = rig.letta.count_requests(f"/v1/runs/{run}$")
        await rig.cycles(10, every=60)
        assert rig.letta.count_requests(f"/v1/runs/{run}$") == asked  # forgotten
        assert rig.metrics().value(DROPPED) == 1


async def test_open_runs_over_capacity_drop_the_oldest(tmp_path: Path) -> None:
    async with open_rig(tmp_path, runs_max_open=2) as rig:
        assert await rig.cycle()
        rig.advance(15)
        oldest = rig.letta.running("agent-old")
        rig.advance(1)
        rig.letta.running("agent-b")
        rig.advance(1)
        rig.letta.running("agent-c")
        await rig.cycle()
        samples = rig.metrics()
        assert samples.value(DROPPED, reason="capacity") == 1
        assert samples.value(IN_PROGRESS) == 2
        assert samples.value(IN_PROGRESS, agent="agent-old") == 0
        rig.letta.update_run(oldest, status="completed", stop_reason="end_turn")
        await rig.cycles(3, every=15)
        assert rig.metrics().value("letta_runs_finished_total") == 1
