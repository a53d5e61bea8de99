"""Once per state (first start, or an older state file): approvals that wait since
before the window the first walk covered."""

from __future__ import annotations

from typing import Final

from exporter.core.tracker import Tracker
from exporter.letta.client import LettaClient
from exporter.letta.models import Run

# The newest runs that stopped requires_approval, then each such thread's newest runs.
_APPROVAL_RUNS: Final = 100
_THREAD_RUNS: Final = 50


async def seed_approvals(client: LettaClient, tracker: Tracker, now: int) -> None:
    """Find the threads whose newest `requires_approval` run still waits. Costs 1
    request, plus 1 per agent or conversation whose newest such run is older than the
    dedupe floor."""
    floor = tracker.dedupe_floor_ns()
    asked = await client.list_runs_where(limit=_APPROVAL_RUNS, stop_reason="requires_approval")
    newest: dict[tuple[str, str], Run] = {}
    for run in asked.runs:  # newest first
        newest.setdefault((run.agent_id, run.conversation_id or ""), run)
    for (agent, conversation), waiting in newest.items():
        if waiting.created_ns >= floor or not tracker.agent_allowed(agent):
            continue  # the walks see this one and what answered it
        filters = {"agent_id": agent}
        if conversation:
            filters["conversation_id"] = conversation
        page = await client.list_runs_where(limit=_THREAD_RUNS, **filters)
        later = [
            r
            for r in page.runs
            if (r.conversation_id or "") == conversation and r.created_ns > waiting.created_ns
        ]
        full = page.raw_count >= _THREAD_RUNS
        if not later and full and (not page.runs or page.runs[-1].created_ns > waiting.created_ns):
            # The agent's own messages cannot be filtered from its conversations': a
            # full page of newer runs of other threads may hide the answer. Better no
            # wait than a false page.
            continue
        # Oldest first, so a continuation still working is seen as working on it.
        tracker.seed_approvals([waiting, *reversed(later)], now)
    tracker.approvals_seeding_done()
