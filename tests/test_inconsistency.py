"""Runs in impossible states and deadlocked threads, from the runs alone (pure core)."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.core.labels import CappedLabel
from exporter.core.options import TrackerOptions
from exporter.core.runs.inconsistency import KINDS
from exporter.core.tracker import Tracker
from exporter.core.views import deadlocks
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.rows import record_from_row, record_to_row
from tests.conftest import load_fixture
from tests.run_factory import S, at, make_run

REFUSED = {
    "run_type": "send_message",
    "error": load_fixture("runs/sync_pending_approval_conflict/run.json")["metadata"]["error"],
}
# The streaming paths (a conversation's messages) raise the refusal inside the stream.
REFUSED_STREAM = {
    "run_type": "send_conversation_message",
    "error": {
        "message_type": "error_message",
        "error_type": "internal_error",
        "message": "CONFLICT: Cannot send a new message: The agent is waiting for approval "
        "on a tool call. Please approve or deny the pending request before continuing.",
    },
}


def make_tracker(**options: Any) -> Tracker:
    aggregates = Aggregates()
    return Tracker(
        TrackerOptions(**{"grace_ns": 0, **options}), aggregates, CappedLabel("agent", 100)
    )


def inconsistent(tracker: Tracker) -> dict[tuple[str, ...], float]:
    return dict(tracker.aggregates.series(m.RUNS_INCONSISTENT))


def walk(tracker: Tracker, runs: list[Any], now: int) -> None:
    """One cycle: the runs newest first, then a finished walk and housekeeping."""
    for run in sorted(runs, key=lambda r: r.created_ns, reverse=True):
        tracker.runs.observe(run, now)
    tracker.runs.positions.walk_done(now)
    tracker.runs.finalize(now)
    tracker.runs.housekeeping(now)


def deadlocked(tracker: Tracker, now: int) -> list[str]:
    return [d.agent for d in deadlocks(tracker.runs, tracker.labels.agent, now)]


def test_each_impossible_finished_state_is_counted_once_beside_the_run() -> None:
    tracker = make_tracker()
    runs = [
        make_run(1, stop_reason=None),  # completed, no stop reason
        make_run(2, "cancelled", stop_reason=None),
        make_run(3, completed_at=None),  # completed, no completed_at
        make_run(4, "failed"),  # failed without stop reason: ordinary on 0.16.8
        make_run(5),
    ]
    for second in (1, 2, 3):
        walk(tracker, runs, at(second))
    assert inconsistent(tracker) == {
        ("agent-a", "finished_without_stop_reason"): 2.0,
        ("agent-a", "finished_without_completed_at"): 1.0,
    }
    assert sum(dict(tracker.aggregates.series(m.RUNS_FINISHED)).values()) == 5


def test_a_run_open_with_a_stop_reason_is_counted_once_even_after_a_restart() -> None:
    tracker = make_tracker()
    stuck = make_run(1, "running", stop_reason="requires_approval")
    walk(tracker, [stuck], at(1))
    walk(tracker, [stuck], at(2))
    assert inconsistent(tracker) == {("agent-a", "stop_reason_while_open"): 1.0}
    record = tracker.runs.records[stuck.id]
    restored = record_from_row(record.id, record.created_ns, record_to_row(record))
    assert restored.open_with_stop_reason
    # A row written before the flag existed loads without it.
    assert not record_from_row(
        record.id, record.created_ns, record_to_row(record)[:17]
    ).open_with_stop_reason
    tracker.runs.observe(make_run(1, "completed", stop_reason="end_turn"), at(3))
    tracker.runs.finalize(at(3))
    assert inconsistent(tracker) == {("agent-a", "stop_reason_while_open"): 1.0}


def test_a_refusal_after_a_cancelled_request_is_a_deadlock_until_a_run_is_accepted() -> None:
    tracker = make_tracker()
    cancelled = make_run(1, "cancelled", stop_reason="cancelled", conversation_id="conv-1")
    refused = [
        make_run(
            n,
            "failed",
            created=n,
            metadata=REFUSED_STREAM,
            stop_reason="error",
            conversation_id="conv-1",
        )
        for n in (2, 3)
    ]
    walk(tracker, [cancelled, *refused], at(10))
    walk(tracker, [cancelled, *refused], at(11))  # re-read: nothing counted twice
    assert inconsistent(tracker) == {("agent-a", "refused_without_wait"): 2.0}
    assert deadlocked(tracker, at(11)) == ["agent-a"]
    # The agent's own thread is not the conversation's: a run there changes nothing.
    walk(tracker, [cancelled, *refused, make_run(4, created=4)], at(12))
    assert deadlocked(tracker, at(12)) == ["agent-a"]
    # An open run on the thread may yet be accepted: not shown as deadlocked meanwhile.
    answer = make_run(5, "created", created=5, conversation_id="conv-1")
    walk(tracker, [cancelled, *refused, answer], at(13))
    assert deadlocked(tracker, at(13)) == []
    done = make_run(5, created=5, conversation_id="conv-1")
    walk(tracker, [cancelled, *refused, done], at(14))
    assert deadlocked(tracker, at(14)) == []
    assert inconsistent(tracker) == {("agent-a", "refused_without_wait"): 2.0}


def conversation_request(status: str = "completed", **fields: Any) -> Any:
    """The approval request at 1 s in conv-1; cancelled with a `total_duration_ns` the
    cancel rewrote (None: as GET one run shows it)."""
    if status == "cancelled":
        return make_run(1, status, stop_reason="cancelled", conversation_id="conv-1", **fields)
    return make_run(1, stop_reason="requires_approval", conversation_id="conv-1")


def conversation_refusal(created: float) -> Any:
    return make_run(
        2,
        "failed",
        created=created,
        metadata=REFUSED_STREAM,
        stop_reason="error",
        conversation_id="conv-1",
    )


@pytest.mark.parametrize("cancel_duration", [3 * S, None], ids=["dated", "undated"])
def test_a_refusal_listed_with_the_cancel_of_the_wait_before_it_is_a_deadlock(
    cancel_duration: int | None,
) -> None:
    # The usual sequence: cancel, then a message at once; one walk lists both, the
    # refusal first (newest first) while the book still holds the request as waiting.
    tracker = make_tracker()
    walk(tracker, [conversation_request()], at(10))
    assert deadlocked(tracker, at(10)) == []
    cancelled = conversation_request("cancelled", total_duration_ns=cancel_duration)
    walk(tracker, [cancelled, conversation_refusal(5)], at(20))
    assert deadlocked(tracker, at(20)) == ["agent-a"]
    walk(tracker, [cancelled, conversation_refusal(5)], at(21))
    assert inconsistent(tracker) == {("agent-a", "refused_without_wait"): 1.0}


def test_a_refusal_while_the_request_still_waited_stays_explained_after_its_cancel() -> None:
    tracker = make_tracker()
    walk(tracker, [conversation_request()], at(10))
    walk(tracker, [conversation_request(), conversation_refusal(5)], at(20))
    # The request seen waiting after the refusal: the cancel came later (GET, undated).
    walk(tracker, [conversation_request("cancelled")], at(30))
    assert deadlocked(tracker, at(30)) == []
    assert inconsistent(tracker) == {}


def test_a_cancel_dated_after_the_refusal_leaves_it_explained() -> None:
    tracker = make_tracker()
    walk(tracker, [conversation_request()], at(10))
    # Refused at 3 s, cancelled at 1 + 4 = 5 s: both in one walk, the refusal first.
    cancelled = conversation_request("cancelled", total_duration_ns=4 * S)
    walk(tracker, [cancelled, conversation_refusal(3)], at(20))
    walk(tracker, [cancelled, conversation_refusal(3)], at(21))
    assert deadlocked(tracker, at(21)) == []
    assert inconsistent(tracker) == {}


def test_a_refusal_explained_by_a_request_seen_later_in_the_walk_is_not_counted() -> None:
    tracker = make_tracker()
    request = make_run(1, stop_reason="requires_approval")
    refused = make_run(2, "failed", created=2, metadata=REFUSED)
    answer = make_run(3, created=3)  # approved after the refusal
    # Newest first: the answer and the refusal come before the request they follow.
    walk(tracker, [request, refused, answer], at(10))
    assert inconsistent(tracker) == {}
    assert deadlocked(tracker, at(10)) == []


def test_a_refusal_after_the_request_was_answered_is_counted() -> None:
    tracker = make_tracker()
    request = make_run(1, stop_reason="requires_approval")
    answer = make_run(2, created=2)
    refused = make_run(3, "failed", created=3, metadata=REFUSED)
    walk(tracker, [request, answer, refused], at(10))
    assert inconsistent(tracker) == {("agent-a", "refused_without_wait"): 1.0}
    assert deadlocked(tracker, at(10)) == ["agent-a"]


def test_nothing_is_judged_before_a_walk_has_listed_the_runs_before_a_refusal() -> None:
    tracker = make_tracker()
    tracker.runs.observe(make_run(2, "failed", created=2, metadata=REFUSED), at(10))
    tracker.runs.finalize(at(10))
    tracker.runs.housekeeping(at(10))
    assert inconsistent(tracker) == {}
    assert deadlocked(tracker, at(10)) == []
    # The older request shows up in the rest of the walk.
    walk(tracker, [make_run(1, stop_reason="requires_approval")], at(11))
    assert inconsistent(tracker) == {}
    assert deadlocked(tracker, at(11)) == []


def test_a_deadlock_survives_a_restart() -> None:
    tracker = make_tracker()
    runs = [
        make_run(1, "cancelled", stop_reason="cancelled"),
        make_run(2, "failed", created=2, metadata=REFUSED),
    ]
    walk(tracker, runs, at(10))
    meta = tracker.runs.take_changes()
    restored = make_tracker()
    restored.runs.load([], meta)
    assert deadlocked(restored, at(11)) == ["agent-a"]


def test_the_kind_label_is_a_fixed_set() -> None:
    assert KINDS == (
        "stop_reason_while_open",
        "finished_without_stop_reason",
        "finished_without_completed_at",
        "refused_without_wait",
    )


def test_a_refusal_below_the_re_read_window_is_not_judged_again() -> None:
    # Such a run may have been judged and forgotten already (housekeeping forgets the
    # refusals below the window before it judges any).
    tracker = make_tracker(lookback_ns=5 * 10**9)
    walk(tracker, [make_run(9, created=100)], at(200))
    old = [
        make_run(1, "cancelled", stop_reason="cancelled"),
        make_run(2, "failed", created=2, metadata=REFUSED),
    ]
    walk(tracker, old, at(201))
    assert inconsistent(tracker) == {}
    assert deadlocked(tracker, at(201)) == []
