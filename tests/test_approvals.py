"""Pending approvals per agent and conversation, from the runs alone
(exporter.core.approvals.book)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.core.approvals.book import ApprovalBook, refused_for_pending_approval
from exporter.letta.models import Run, to_epoch_ns
from tests.conftest import load_fixture

S = 1_000_000_000
REFUSED = load_fixture("runs/sync_pending_approval_conflict/run.json")["metadata"]["error"]


def feed(book: ApprovalBook, run: Run, now: int = 0, floor: int = 0) -> None:
    completed = run.completed_at
    book.observe(
        run_id=run.id,
        agent_id=run.agent_id,
        conversation_id=run.conversation_id,
        created_ns=run.created_ns,
        status=run.status,
        stop_reason=run.stop_reason,
        terminal=run.is_terminal,
        completed_ns=to_epoch_ns(completed) if completed is not None else None,
        refused=refused_for_pending_approval(run.status, run.stop_reason, run.metadata),
        now=now,
        floor_ns=floor,
    )


def run(n: int, stop_reason: str | None, *, status: str = "completed", **extra: Any) -> Run:
    created = f"2026-11-23T12:00:{n:02d}.000000Z"
    data: dict[str, Any] = {
        "id": f"run-{n:08d}-0000-4000-8000-000000000000",
        "agent_id": extra.pop("agent", "agent-a"),
        "status": status,
        "created_at": created,
        "completed_at": None if status in ("created", "running") else created[:-1],
        "stop_reason": stop_reason,
    }
    data.update(extra)
    return Run.model_validate(data)


def waiting(book: ApprovalBook) -> set[tuple[str, str, str]]:
    return {(w.agent_id, w.conversation_id, w.run_id[:12]) for w in book.waits()}


def test_the_captured_gamma_agent_waits_on_its_last_request_in_either_order() -> None:
    gamma = [Run.model_validate(r) for r in load_fixture("list/runs_agent_id_gamma.json")]
    agent = gamma[0].agent_id
    for order in (gamma, list(reversed(gamma))):
        book = ApprovalBook()
        for item in order:
            feed(book, item)
        [wait] = list(book.waits())
        assert (wait.agent_id, wait.run_id) == (agent, "run-315bf847-22f8-4949-9760-16c1d78fe75f")
        assert wait.since_ns == to_epoch_ns(gamma[0].completed_at)  # type: ignore[arg-type]


def test_the_captured_refused_message_leaves_the_approval_waiting() -> None:
    gamma = {
        r["id"][:12]: Run.model_validate(r) for r in load_fixture("list/runs_agent_id_gamma.json")
    }
    book = ApprovalBook()
    feed(book, gamma["run-db8ed6cb"])
    feed(book, gamma["run-5a12fef8"])  # failed, no stop reason, "waiting for approval"
    assert waiting(book) == {(gamma["run-db8ed6cb"].agent_id, "", "run-db8ed6cb")}
    feed(book, gamma["run-0a4b9823"])  # the approval continued the agent
    assert waiting(book) == set()


def test_an_ordinary_failed_run_without_stop_reason_is_not_a_refusal() -> None:
    llm_500 = Run.model_validate(load_fixture("runs/sync_llm_500/run.json"))
    conflict = Run.model_validate(load_fixture("runs/sync_pending_approval_conflict/run.json"))
    assert not refused_for_pending_approval(llm_500.status, llm_500.stop_reason, llm_500.metadata)
    assert refused_for_pending_approval(conflict.status, conflict.stop_reason, conflict.metadata)
    # Past the pending-approval check means it was the answer: the wait is over.
    book = ApprovalBook()
    feed(book, run(1, "requires_approval"))
    feed(book, run(2, None, status="failed", metadata=llm_500.metadata))
    assert waiting(book) == set()


@pytest.mark.parametrize(
    "error",
    [
        {"message_type": "error_message", "error_type": "internal_error", "message": REFUSED},
        {"detail": {"code": "PENDING_APPROVAL", "message": "CONFLICT: ..."}},
    ],
)
def test_a_refusal_kept_as_an_error_object_is_recognised(error: dict[str, Any]) -> None:
    assert refused_for_pending_approval("failed", None, {"error": error})
    assert not refused_for_pending_approval("failed", "llm_api_error", {"error": error})


def test_approve_deny_and_cancel_end_the_wait() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval"))
    feed(book, run(2, "end_turn"))  # approved (or denied: also a new run that continues)
    assert waiting(book) == set()
    feed(book, run(3, "requires_approval"))
    assert waiting(book) == {("agent-a", "", "run-00000003")}
    feed(book, run(3, "cancelled", status="cancelled"))
    assert waiting(book) == set()


def test_conversations_wait_on_their_own() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval", conversation_id="conv-1"))
    feed(book, run(2, "requires_approval", conversation_id="conv-2"))
    feed(book, run(3, "end_turn"))  # the agent's own thread: answers neither
    feed(book, run(4, "end_turn", conversation_id="conv-2"))
    assert waiting(book) == {("agent-a", "conv-1", "run-00000001")}


def test_a_continuation_still_working_hides_the_wait_and_a_refusal_brings_it_back() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval"))
    feed(book, run(2, None, status="created"))
    assert waiting(book) == set()
    feed(book, run(2, None, status="failed", metadata={"error": REFUSED}))
    assert waiting(book) == {("agent-a", "", "run-00000001")}


def test_a_known_wait_outlives_the_window_and_is_refreshed_not_forgotten() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval"), now=10)
    book.prune(floor_ns=run(50, None).created_ns)
    assert waiting(book) == {("agent-a", "", "run-00000001")}
    assert book.due_refresh(since=11) == ["run-00000001-0000-4000-8000-000000000000"]
    feed(book, run(1, "requires_approval"), now=12, floor=run(50, None).created_ns)
    assert book.due_refresh(since=11) == []
    book.vanished("run-00000001-0000-4000-8000-000000000000")  # agent deleted
    assert waiting(book) == set()


def test_an_unknown_wait_below_the_floor_is_history() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval"), floor=run(5, None).created_ns)
    assert waiting(book) == set()


def test_the_book_round_trips_through_json() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval", conversation_id="conv-1"))
    feed(book, run(2, "end_turn"))
    again = ApprovalBook.from_json(json.loads(json.dumps(book.to_json())))
    assert waiting(again) == waiting(book)
    feed(again, run(0, "requires_approval"))  # older than the answer on its thread
    assert waiting(again) == {("agent-a", "conv-1", "run-00000001")}


def test_a_deleted_continuation_no_longer_hides_the_wait() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval"))
    feed(book, run(2, None, status="running"))
    assert waiting(book) == set()
    book.vanished("run-00000002-0000-4000-8000-000000000000")
    assert waiting(book) == {("agent-a", "", "run-00000001")}


def test_a_zombie_continuation_hides_the_wait_only_until_it_is_stale() -> None:
    book = ApprovalBook()
    feed(book, run(1, "requires_approval"))
    zombie = run(2, None, status="created")
    feed(book, zombie)
    assert list(book.waits(working_after_ns=zombie.created_ns - 1)) == []
    assert len(list(book.waits(working_after_ns=zombie.created_ns))) == 1


def test_the_tracker_feeds_the_book_from_every_observation() -> None:
    from exporter.core.labels import CappedLabel
    from exporter.core.options import TrackerOptions
    from exporter.core.tracker import Tracker
    from exporter.core.views import approval_waits
    from exporter.series.aggregates import Aggregates

    gamma = [Run.model_validate(r) for r in load_fixture("list/runs_agent_id_gamma.json")]
    tracker = Tracker(TrackerOptions(grace_ns=0), Aggregates(), CappedLabel("agent", 10))
    now = max(r.created_ns for r in gamma) + 60 * S
    for item in gamma:  # newest first, as a scan lists them
        tracker.runs.observe(item, now)
    [wait] = list(approval_waits(tracker.runs, tracker.labels.agent, now))
    assert (wait.agent, wait.since_ns) == (
        gamma[0].agent_id,
        to_epoch_ns(gamma[0].completed_at),  # type: ignore[arg-type]
    )
    newer = gamma[0].model_copy(
        update={"id": "run-00000000-0000-4000-8000-00000000000a", "stop_reason": "end_turn"}
    )
    newer = newer.model_copy(update={"created_at": newer.created_at.replace(minute=59)})
    tracker.runs.observe(newer, now)
    assert list(approval_waits(tracker.runs, tracker.labels.agent, now)) == []
