"""The counting rules: each finished run once, after its late fields settle."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.core.labels import OTHER, CappedLabel
from exporter.core.options import TrackerOptions
from exporter.core.runs.record import Phase
from exporter.core.tracker import Tracker
from exporter.core.views import open_runs
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from tests.run_factory import S, at, make_run


def make_tracker(label_limit: int = 100, **options: Any) -> Tracker:
    aggregates = Aggregates()
    label = CappedLabel(
        "agent", label_limit, on_overflow=lambda name: aggregates.inc(m.LABEL_OVERFLOW, (name,))
    )
    return Tracker(TrackerOptions(**options), aggregates, label)


def finished(tracker: Tracker) -> dict[tuple[str, ...], float]:
    return dict(tracker.aggregates.series(m.RUNS_FINISHED))


def test_a_finished_run_is_counted_only_after_the_grace_period_and_a_fresh_look() -> None:
    tracker = make_tracker(grace_ns=5 * S)
    tracker.runs.observe(make_run(1, created=0), at(3))
    tracker.runs.finalize(at(4))
    assert finished(tracker) == {}
    assert tracker.runs.finalize(at(9)) == 0  # grace over, but nothing seen since it ended
    assert [r.id for r in tracker.runs.records.settling_due_refresh(at(9))] == [make_run(1).id]
    tracker.runs.observe(make_run(1, created=0, total_duration_ns=2_500_000_000), at(9))
    assert tracker.runs.finalize(at(9)) == 1
    assert finished(tracker) == {("agent-a", "completed", "end_turn"): 1.0}
    hist = tracker.aggregates.histograms[m.RUN_DURATION.name][("agent-a", "completed")]
    assert hist.sum == pytest.approx(2.5)


def test_a_run_seen_again_after_counting_is_not_counted_twice() -> None:
    tracker = make_tracker(grace_ns=0)
    for second in (1, 2, 3):
        tracker.runs.observe(make_run(1), at(second))
        tracker.runs.finalize(at(second))
    assert finished(tracker) == {("agent-a", "completed", "end_turn"): 1.0}


def test_a_status_change_after_counting_is_reported_not_recounted() -> None:
    tracker = make_tracker(grace_ns=0)
    tracker.runs.observe(make_run(1, stop_reason="requires_approval"), at(1))
    tracker.runs.finalize(at(1))
    tracker.runs.observe(make_run(1, status="cancelled", stop_reason="cancelled"), at(2))
    tracker.runs.finalize(at(2))
    assert sum(finished(tracker).values()) == 1
    assert tracker.aggregates.counter(m.CHANGED_AFTER_COUNT) == 1


def test_an_open_run_is_followed_until_it_ends_and_then_counted() -> None:
    tracker = make_tracker(grace_ns=0)
    tracker.runs.observe(make_run(1, status="created", created=0), at(1))
    assert len(tracker.runs.records.in_phase(Phase.OPEN)) == 1
    tracker.runs.observe(make_run(1, status="running", created=0), at(2))
    tracker.runs.finalize(at(2))
    assert finished(tracker) == {}
    tracker.runs.observe(
        make_run(1, status="failed", created=0, stop_reason="llm_api_error"), at(3)
    )
    tracker.runs.finalize(at(3))
    assert finished(tracker) == {("agent-a", "failed", "llm_api_error"): 1.0}


def test_first_start_history_is_baseline_but_open_runs_are_counted_when_they_end() -> None:
    tracker = make_tracker(grace_ns=0)
    tracker.runs.observe(make_run(1, created=0), at(1), count=False)
    tracker.runs.observe(make_run(2, status="running", created=0), at(1), count=False)
    tracker.runs.finalize(at(1))
    assert finished(tracker) == {}
    tracker.runs.observe(make_run(2, created=0), at(2))
    tracker.runs.finalize(at(2))
    assert finished(tracker) == {("agent-a", "completed", "end_turn"): 1.0}


def test_an_open_run_that_vanishes_is_counted_as_deleted() -> None:
    tracker = make_tracker()
    tracker.runs.observe(make_run(1, status="running"), at(1))
    tracker.runs.vanished(make_run(1).id, at(2))
    assert dict(tracker.aggregates.series(m.RUNS_DELETED)) == {("agent-a",): 1.0}
    assert not tracker.runs.records


def test_a_finished_run_that_vanishes_while_settling_is_still_counted() -> None:
    tracker = make_tracker(grace_ns=60 * S)
    tracker.runs.observe(make_run(1), at(1))
    tracker.runs.vanished(make_run(1).id, at(2))
    assert finished(tracker) == {("agent-a", "completed", "end_turn"): 1.0}


def test_duration_falls_back_to_completed_minus_created() -> None:
    tracker = make_tracker(grace_ns=0)
    tracker.runs.observe(make_run(1, created=10), at(20))
    tracker.runs.finalize(at(20))
    hist = tracker.aggregates.histograms[m.RUN_DURATION.name][("agent-a", "completed")]
    assert hist.sum == pytest.approx(2.0) and hist.count == 1


def test_callbacks_wait_for_their_result_then_count_it() -> None:
    tracker = make_tracker(grace_ns=0, callback_wait_ns=30 * S)
    tracker.runs.observe(make_run(1, callback_url="http://hook"), at(1))
    tracker.runs.finalize(at(2))
    assert finished(tracker) == {}
    tracker.runs.observe(make_run(1, callback_url="http://hook", callback_status_code=500), at(3))
    tracker.runs.finalize(at(3))
    assert dict(tracker.aggregates.series(m.RUN_CALLBACKS)) == {("agent-a", "failure"): 1.0}


def test_a_callback_never_recorded_is_counted_unknown_after_the_wait() -> None:
    tracker = make_tracker(grace_ns=0, callback_wait_ns=30 * S)
    tracker.runs.observe(make_run(1, callback_url="http://hook"), at(1))
    tracker.runs.observe(make_run(1, callback_url="http://hook"), at(40))
    tracker.runs.finalize(at(40))
    assert dict(tracker.aggregates.series(m.RUN_CALLBACKS)) == {("agent-a", "unknown"): 1.0}


def test_agents_past_the_label_cap_go_to_other_and_are_counted() -> None:
    tracker = make_tracker(label_limit=2, grace_ns=0)
    for n, agent in enumerate(["agent-1", "agent-2", "agent-3", "agent-4"]):
        tracker.runs.observe(make_run(n, agent=agent), at(1))
    tracker.runs.finalize(at(1))
    agents = {labels[0] for labels in finished(tracker)}
    assert agents == {"agent-1", "agent-2", OTHER}
    assert tracker.aggregates.counter(m.LABEL_OVERFLOW, ("agent",)) == 2


def test_unknown_status_and_stop_reason_are_sanitised_labels() -> None:
    tracker = make_tracker(grace_ns=0)
    tracker.runs.observe(make_run(1, status="Paused!", stop_reason="Quota Exhausted"), at(1))
    tracker.runs.finalize(at(1))
    assert finished(tracker) == {("agent-a", "paused", "quota_exhausted"): 1.0}


def test_null_stop_reason_is_labelled_none() -> None:
    tracker = make_tracker(grace_ns=0)
    tracker.runs.observe(make_run(1, status="failed"), at(1))
    tracker.runs.finalize(at(1))
    assert finished(tracker) == {("agent-a", "failed", "none"): 1.0}


def test_counted_runs_are_forgotten_once_outside_the_lookback_window() -> None:
    tracker = make_tracker(grace_ns=0, lookback_ns=60 * S)
    tracker.runs.observe(make_run(1, created=0), at(1))
    tracker.runs.observe(make_run(2, created=100), at(101))
    tracker.runs.finalize(at(101))
    tracker.runs.housekeeping(at(101))
    assert set(tracker.runs.records) == {make_run(2).id}
    # Seen again by a scan that reaches past the window: ignored, not recounted.
    tracker.runs.observe(make_run(1, created=0), at(102))
    tracker.runs.finalize(at(102))
    assert sum(finished(tracker).values()) == 2


def test_open_runs_past_the_forget_horizon_are_dropped_and_counted() -> None:
    tracker = make_tracker(forget_after_ns=100 * S)
    tracker.runs.observe(make_run(1, status="created", created=0), at(1))
    tracker.runs.housekeeping(at(200))
    assert not tracker.runs.records
    assert tracker.aggregates.counter(m.OPEN_RUNS_DROPPED, ("expired",)) == 1


def test_the_open_set_is_capped_oldest_first() -> None:
    tracker = make_tracker(max_open_runs=2)
    for n in range(3):
        tracker.runs.observe(make_run(n, status="running", created=n), at(5))
    tracker.runs.housekeeping(at(5))
    assert sorted(tracker.runs.records) == sorted([make_run(1).id, make_run(2).id])
    assert tracker.aggregates.counter(m.OPEN_RUNS_DROPPED, ("capacity",)) == 1


def test_stale_runs_leave_the_in_progress_view() -> None:
    tracker = make_tracker(stale_after_ns=60 * S)
    tracker.runs.observe(make_run(1, status="running", created=0), at(1))
    tracker.runs.observe(make_run(2, status="running", created=100), at(101))
    views = {v.created_ns: v.stale for v in open_runs(tracker.runs, tracker.labels.agent, at(110))}
    assert views == {at(0): True, at(100): False}


def test_backfilled_history_is_counted_without_being_remembered() -> None:
    tracker = make_tracker(grace_ns=0, lookback_ns=60 * S)
    tracker.runs.observe(make_run(9, created=10_000), at(10_001), count=False)
    tracker.runs.observe_backfill(make_run(1, created=0), at(10_001))
    assert finished(tracker) == {("agent-a", "completed", "end_turn"): 1.0}
    assert make_run(1).id not in tracker.runs.records


def test_the_next_settle_moment_and_the_oldest_uncounted_finish() -> None:
    tracker = make_tracker(grace_ns=5 * S, enrich=())
    records = tracker.runs.records
    assert records.next_settle_ns(at(0)) is None
    assert records.oldest_uncounted_finish_ns() is None
    tracker.runs.observe(make_run(1, created=0), at(3))  # completed at 2 s, seen at 3 s
    tracker.runs.observe(make_run(2, created=1), at(4))  # completed at 3 s, seen at 4 s
    assert records.next_settle_ns(at(4)) == at(8)  # the first grace period to end
    assert records.next_settle_ns(at(8.5)) == at(9)
    assert records.next_settle_ns(at(9.5)) is None  # both over: the cycle refreshes them
    assert records.oldest_uncounted_finish_ns() == at(2)
    tracker.runs.observe(make_run(1, created=0), at(9))
    tracker.runs.observe(make_run(2, created=1), at(9))
    tracker.runs.finalize(at(9))
    assert records.oldest_uncounted_finish_ns() is None  # counted
