"""Finding runs through the poll cycle, in-process: paging, lost cursors, stalls, restarts.

See tests/cycle_rig.py for the mocked Letta API (FakeLetta's store: 0.16.8 list cursors)
and the fake clock.
"""

from __future__ import annotations

from pathlib import Path

from tests.cycle_rig import CycleRig, open_rig

FINISHED = "letta_runs_finished_total"
LIST = r"^/v1/runs/$"


async def burst(rig: CycleRig, count: int) -> list[str]:
    """`count` runs that finished in the last `count` seconds, newest last."""
    ids = []
    for i in range(count):
        ids.append(rig.letta.finished(f"agent-{i}", took=0.5))
        rig.advance(1)
    return ids


async def test_runs_over_many_pages_are_each_counted_once(tmp_path: Path) -> None:
    async with open_rig(tmp_path, letta_page_size=3) as rig:
        assert await rig.cycle()
        rig.advance(15)
        await burst(rig, 10)
        await rig.cycles(4, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 10
        assert samples.value("letta_exporter_cursor_lost_total") == 0
        assert samples.value("letta_exporter_pagination_stalls_total") == 0


async def test_a_walk_whose_cursor_runs_were_deleted_recovers_and_loses_no_run(
    tmp_path: Path,
) -> None:
    # One page per cycle, so the walk stops at a cursor and waits for the next cycle.
    async with open_rig(tmp_path, letta_page_size=2, poll_max_pages=1) as rig:
        rig.letta.set_semantics("letta-0.16.8", unknown_cursor="404")  # as Cloud answers
        assert await rig.cycle()
        rig.advance(15)
        runs = await burst(rig, 6)
        await rig.cycle()  # the newest two, then the walk waits at a cursor among them
        for run in runs[-2:]:
            rig.letta.delete_run(run)
        await rig.cycles(8, every=15)
        samples = rig.metrics()
        assert samples.value("letta_exporter_cursor_lost_total") >= 1
        # The deleted two had finished: counted with what the list showed of them.
        assert samples.value(FINISHED) == 6
        await rig.cycles(4, every=15)
        assert rig.metrics().value(FINISHED) == 6


async def test_a_walk_whose_cursor_is_ignored_by_the_server_recovers(tmp_path: Path) -> None:
    # 0.16.8 itself answers an unknown cursor with the head of the list (§4.4).
    async with open_rig(tmp_path, letta_page_size=2, poll_max_pages=1) as rig:
        assert await rig.cycle()
        rig.advance(15)
        runs = await burst(rig, 6)
        await rig.cycle()
        for run in runs[-2:]:
            rig.letta.delete_run(run)
        await burst(rig, 2)  # newer runs: the head the server restarts from
        await rig.cycles(12, every=15)  # one page a cycle, and lost pages cost one each
        samples = rig.metrics()
        assert samples.value("letta_exporter_cursor_lost_total") >= 1
        assert samples.value(FINISHED) == 8


async def test_a_server_that_ignores_cursors_stalls_the_walk_without_looping(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, letta_page_size=2) as rig:
        assert await rig.cycle()
        rig.advance(15)
        await burst(rig, 5)
        rig.letta.ignore_cursors = True
        listed = rig.letta.count_requests(LIST)
        await rig.cycle()
        samples = rig.metrics()
        assert samples.value("letta_exporter_pagination_stalls_total") == 1
        assert rig.letta.count_requests(LIST) - listed < 20
        # Once the server pages again, every run is counted, once.
        rig.letta.ignore_cursors = False
        await rig.cycles(3, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 5
        assert samples.value("letta_exporter_pagination_stalls_total") == 1


async def test_runs_that_finished_while_the_exporter_was_stopped_are_counted_once(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, letta_page_size=5) as rig:
        assert await rig.cycle()
        rig.advance(15)
        await burst(rig, 3)
        await rig.cycles(2, every=15)
        assert rig.metrics().value(FINISHED) == 3
        await rig.stop()
        rig.advance(600)
        await burst(rig, 12)  # older than the lookback window by the time it is back
        rig.advance(600)
        rig.start()
        await rig.cycles(3, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 15
        assert samples.value("letta_exporter_counting_lag_seconds") == 0


async def test_backfill_counts_the_history_it_covers_once(tmp_path: Path) -> None:
    async with open_rig(tmp_path, backfill=3600, letta_page_size=4) as rig:
        rig.letta.finished("agent-old", took=1, created_at=rig.now - 7200)
        for minutes in range(50, 0, -10):
            rig.letta.finished("agent-a", created_at=rig.now - minutes * 60)
        rig.letta.running("agent-a")
        await rig.cycles(4, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED, agent="agent-a") == 5
        assert samples.value(FINISHED, agent="agent-old") == 0
        assert samples.value("letta_exporter_backfill_remaining_seconds") == 0


async def test_cycles_that_fail_while_letta_is_down_lose_no_run(tmp_path: Path) -> None:
    async with open_rig(tmp_path, letta_retries=3) as rig:
        assert await rig.cycle()
        rig.advance(15)
        await burst(rig, 4)
        listed = rig.letta.count_requests(LIST)
        rig.letta.fail(LIST, 503, times=8)  # two cycles of 1 + 3 retried attempts
        assert not await rig.cycle()
        samples = rig.metrics()
        assert samples.value("letta_up") == 0
        assert samples.value("letta_exporter_poll_errors_total", reason="http_5xx") == 1
        assert not await rig.cycle()
        assert rig.letta.count_requests(LIST) == listed + 8
        rig.advance(15)
        assert await rig.cycle()
        await rig.cycles(2, every=15)
        samples = rig.metrics()
        assert samples.value("letta_up") == 1
        assert samples.value("letta_exporter_poll_errors_total") == 2
        assert samples.value(FINISHED) == 4
