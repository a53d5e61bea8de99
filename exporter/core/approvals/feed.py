"""What observations of runs tell the approval book, and the book as checkpoint meta."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from exporter.core.approvals.book import (
    APPROVAL_STOP_REASON,
    ApprovalBook,
    refused_for_pending_approval,
)
from exporter.letta.models import Run, to_epoch_ns

# Runs that ended in these statuses answer any approval waiting on their thread (failed
# ones may be refusals, open ones are still working: the approval book sorts those out).
_ANSWERING_STATUSES: Final = frozenset({"completed", "cancelled"})


class ApprovalFeed:
    """Feeds the approval book from every observation, counted or not."""

    def __init__(self, agent_allowed: Callable[[str], bool]) -> None:
        self.book = ApprovalBook()
        # False until pending approvals older than the first walk have been looked for
        # (a first start, or a state file from before approvals were kept).
        self.seeded = False
        self._allowed = agent_allowed

    def observe(self, run: Run, created: int, now: int, floor: int) -> None:
        """One observation of an admitted run; `floor` as in `ApprovalBook.observe`."""
        stop_reason = run.stop_reason
        cancelled = run.status == "cancelled"
        # A cancel rewrites the list's duration (0.16.8 `update_run_by_id_async`), so it
        # dates the cancel; GET one run leaves it null.
        duration = run.total_duration_ns if cancelled else None
        ended = created + duration if duration is not None else None
        if stop_reason != APPROVAL_STOP_REASON and run.status in _ANSWERING_STATUSES:
            self.book.answered(
                run.id,
                run.agent_id,
                run.conversation_id,
                created,
                cancelled=cancelled,
                ended_ns=ended,
            )
            return
        # Only a request's completion time is kept: skip the conversion for other runs.
        completed = run.completed_at if stop_reason == APPROVAL_STOP_REASON else None
        self.book.observe(
            run_id=run.id,
            agent_id=run.agent_id,
            conversation_id=run.conversation_id,
            created_ns=created,
            status=run.status,
            stop_reason=run.stop_reason,
            terminal=run.is_terminal,
            completed_ns=to_epoch_ns(completed) if completed is not None else None,
            refused=refused_for_pending_approval(run.status, run.stop_reason, run.metadata),
            now=now,
            floor_ns=floor,
            ended_ns=ended,
        )

    def seed(self, runs: list[Run], now: int) -> None:
        """Runs of one thread, fetched to learn whether its newest `requires_approval`
        run (older than any walk) still waits."""
        for run in runs:
            if self._allowed(run.agent_id):
                self.observe(run, run.created_ns, now, 0)

    def seeding_done(self) -> None:
        """Waits older than the first walk have been looked for: never again."""
        self.seeded = True
        self.book.dirty = True  # persist the (maybe empty) book: the marker

    def take_changes(self) -> dict[str, str]:
        """The book as checkpoint meta, when it changed since the last call."""
        if not self.book.dirty:
            return {}
        self.book.dirty = False
        return {"approvals": json.dumps(self.book.to_json(), separators=(",", ":"))}

    def load(self, meta: dict[str, str]) -> None:
        """Restore the book from checkpoint meta (absent in files from before it)."""
        approvals = meta.get("approvals")
        if approvals is not None:
            self.book = ApprovalBook.from_json(json.loads(approvals))
            self.seeded = True
