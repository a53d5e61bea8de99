"""The descending walk: floors, lost cursors, SQLite-safe cursors and stalls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exporter.core.listing.walk import Walk
from exporter.letta.models import Run

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def run(index: float, seconds: float) -> Run:
    return Run(
        id=f"run-{int(index * 10):08d}-0000-4000-8000-000000000000",
        agent_id="agent-a",
        status="completed",
        created_at=T0 + timedelta(seconds=seconds),
    )


def test_a_short_page_ends_the_walk() -> None:
    walk = Walk(floor_ns=0)
    step = walk.feed([run(3, 3), run(2, 2)], raw_count=2, limit=10)
    assert step.done and [r.id for r in step.fresh] == [run(3, 3).id, run(2, 2).id]


def test_rows_below_the_floor_end_the_walk_and_are_not_returned() -> None:
    floor = Walk(floor_ns=None, first_lookback_ns=1_500_000_000)
    step = floor.feed([run(3, 3), run(2, 2), run(1, 1)], raw_count=3, limit=3)
    assert step.done
    assert [r.id for r in step.fresh] == [run(3, 3).id, run(2, 2).id]


def test_cursors_prefer_a_row_of_a_newer_second_then_fall_back_to_the_tail() -> None:
    walk = Walk(floor_ns=0)
    walk.feed([run(5, 5), run(4, 4), run(3, 3)], raw_count=3, limit=3)
    assert [c for c, _ in walk.cursors] == [run(4, 4).id, run(3, 3).id, run(5, 5).id]


def test_cursor_steps_back_to_an_earlier_second_for_sqlite_servers() -> None:
    # Rows 2 and 1 share second 2: a SQLite server would skip the rest of that second
    # after cursor row 1, so the walk asks from row 3 (second 3) and re-reads second 2.
    walk = Walk(floor_ns=0)
    walk.feed([run(3, 3.5), run(2, 2.7), run(1, 2.2)], raw_count=3, limit=3)
    assert walk.cursor() == run(3, 3.5).id
    step = walk.feed([run(2, 2.7), run(1, 2.2), run(0, 2.1)], raw_count=3, limit=3)
    assert [r.id for r in step.fresh] == [run(0, 2.1).id]


def test_a_lost_cursor_falls_back_to_another_cursor_of_the_page() -> None:
    walk = Walk(floor_ns=0)
    walk.feed([run(5, 5), run(4, 4), run(3, 3)], raw_count=3, limit=3)
    assert walk.cursor() == run(4, 4).id
    # Letta restarted from the head: the first row is not older than the cursor.
    step = walk.feed([run(9, 9), run(5, 5), run(4, 4)], raw_count=3, limit=3)
    assert step.lost_cursor and step.retry and not step.fresh
    assert walk.cursor() == run(3, 3).id


def test_when_every_cursor_is_lost_the_walk_restarts_from_the_head_without_recounting() -> None:
    walk = Walk(floor_ns=0)
    walk.feed([run(5, 5), run(4, 4)], raw_count=2, limit=2)
    walk.cursors = walk.cursors[:1]
    step = walk.feed([run(9, 9), run(5, 5)], raw_count=2, limit=2)
    assert step.lost_cursor and not step.retry
    assert [r.id for r in step.fresh] == []  # 9 is newer than where the walk began
    assert walk.cursor() == run(9, 9).id
    step = walk.feed([run(5, 5), run(4, 4)], raw_count=2, limit=2)
    assert [r.id for r in step.fresh] == []  # both already processed before the loss
    step = walk.feed([run(4, 4), run(2, 2)], raw_count=2, limit=2)
    assert [r.id for r in step.fresh] == [run(2, 2).id]


def test_a_page_that_makes_no_progress_stalls_instead_of_looping() -> None:
    walk = Walk(floor_ns=0)
    walk.feed([run(5, 5), run(4, 4)], raw_count=2, limit=2)
    step = walk.feed([run(3.5, 4.5), run(4, 4)], raw_count=2, limit=2)
    assert step.stalled


def test_a_server_that_ignores_cursors_is_stopped_after_one_restart() -> None:
    walk = Walk(floor_ns=0)
    page = [run(5, 5), run(4, 4)]
    walk.new_cycle()
    steps = [walk.feed(page, raw_count=2, limit=2) for _ in range(8)]
    assert any(s.stalled for s in steps)
    first_stall = next(i for i, s in enumerate(steps) if s.stalled)
    assert first_stall < 8


def test_walk_state_round_trips_through_json() -> None:
    walk = Walk(floor_ns=5, count=False, first=True, first_lookback_ns=7)
    walk.feed([run(5, 5), run(4, 4)], raw_count=2, limit=2)
    again = Walk.from_json(walk.to_json())
    assert again.to_json() == walk.to_json()


def test_a_full_page_inside_one_second_asks_for_a_wider_page_not_a_cursor() -> None:
    walk = Walk(floor_ns=0)
    step = walk.feed([run(3, 2.3), run(2, 2.2)], raw_count=2, limit=2, can_widen=True)
    assert step.widen and walk.cursor() is None
    step = walk.feed(
        [run(3, 2.3), run(2, 2.2), run(1, 2.1), run(0, 1.5)], raw_count=4, limit=4, can_widen=True
    )
    assert [r.id for r in step.fresh] == [run(1, 2.1).id, run(0, 1.5).id]
    assert not step.widen and walk.cursor() == run(1, 2.1).id


def test_a_page_of_only_rows_read_before_widens_instead_of_stalling() -> None:
    walk = Walk(floor_ns=0)
    tail = [run(40 + i, 4.9 - i / 10) for i in range(7)]  # seven rows in second 4
    walk.feed([run(50, 5.0), *tail], raw_count=8, limit=8, can_widen=True)
    assert walk.cursor() == run(50, 5.0).id
    step = walk.feed(tail[:4], raw_count=4, limit=4, can_widen=True)
    assert step.widen and not step.stalled and not step.fresh
    step = walk.feed([*tail, run(1, 3.5)], raw_count=8, limit=8, can_widen=True)
    assert [r.id for r in step.fresh] == [run(1, 3.5).id]
