"""Open runs and pending approvals as the gauges see them (labels applied)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from exporter.core.book.lifecycle import RunBook
from exporter.core.labels import CappedLabel, enum_value
from exporter.core.runs.record import Phase


@dataclass(frozen=True, slots=True)
class ApprovalWaitView:
    """One pending approval as the gauges see it: the agent label and since when."""

    agent: str
    since_ns: int


@dataclass(frozen=True, slots=True)
class DeadlockView:
    """One deadlocked thread (agent or conversation) as the gauge sees it."""

    agent: str
    refused_ns: int


@dataclass(frozen=True, slots=True)
class OpenRunView:
    """One open run as the gauges see it."""

    agent: str
    status: str
    created_ns: int
    stale: bool


def open_runs(runs: RunBook, agent_label: CappedLabel, now: int) -> Iterator[OpenRunView]:
    """Open runs with the labels the gauges use."""
    stale_after = runs.options.stale_after_ns
    for r in runs.records.values():
        if r.phase is Phase.OPEN:
            yield OpenRunView(
                agent_label(r.agent_id, count_overflow=False),
                enum_value(r.status),
                r.created_ns,
                now - r.created_ns > stale_after,
            )


def approval_waits(runs: RunBook, agent_label: CappedLabel, now: int) -> Iterator[ApprovalWaitView]:
    """Pending approvals with the agent label the gauges use."""
    # A zombie (stale) run does not make its thread look busy.
    busy_after = now - runs.options.stale_after_ns
    for wait in runs.approvals.book.waits(working_after_ns=busy_after):
        yield ApprovalWaitView(agent_label(wait.agent_id, count_overflow=False), wait.since_ns)


def deadlocks(runs: RunBook, agent_label: CappedLabel, now: int) -> Iterator[DeadlockView]:
    """Threads whose messages Letta refuses for an approval the exporter cannot see,
    unless a run of theirs is open (not stale): it may yet be accepted."""
    listed = runs.positions.listed_until_ns
    if listed is None:
        return  # a refusal is judged once the runs before it were all listed
    stale_after = runs.options.stale_after_ns
    busy = {
        (r.agent_id, r.conversation_id or "")
        for r in runs.records.values()
        if r.phase is Phase.OPEN and now - r.created_ns <= stale_after
    }
    for thread, refused_ns in runs.approvals.book.deadlocks():
        if refused_ns < listed and thread not in busy:
            yield DeadlockView(agent_label(thread[0], count_overflow=False), refused_ns)
