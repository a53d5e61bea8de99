"""The steps of many finished runs from one walk over every run's steps.

`GET /v1/steps/` (served by Letta Cloud; 0.16.8 answers 400) lists every run's steps
oldest first from a `start_date`. Steps carry their `run_id` and every token field but
no time, so the window comes from the runs: the oldest planned run's created_at minus a
margin (a run's steps are created after it). Pure rules: the poller fetches the pages.

A planned run takes its steps only from a walk that reached the end of the list (a page
shorter than asked): a run's steps may straddle pages, and a walk cut short by its page
budget may have missed some, so it gives nothing. A run with a step still pending (steps
are written pending and filled in later) waits for the next walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from exporter.core.runs.record import RunRecord
from exporter.letta.models import Step
from exporter.units import NS_PER_S

MAX_WALK_PAGES: Final = 50
PAGE_LIMIT: Final = 1000
WINDOW_MARGIN_NS: Final = 10 * NS_PER_S
"""How far before the oldest planned run's created_at the window starts (clock slop
between the process that created the run and the database's now() of its steps)."""


@dataclass(slots=True)
class StepRate:
    """Steps per second across every run, learnt from the last complete walk."""

    per_s: float | None = None

    def learn(self, steps: int, window_s: float) -> None:
        if window_s > 0:
            self.per_s = steps / window_s


@dataclass(frozen=True, slots=True)
class StepPlan:
    """The runs one walk serves, where its window starts, and its page budget."""

    runs: tuple[RunRecord, ...]
    start_ns: int
    budget: int


def plan_step_walk(
    wanting: Iterable[RunRecord],
    now: int,
    rate: StepRate,
    *,
    page_limit: int = PAGE_LIMIT,
    max_pages: int = MAX_WALK_PAGES,
) -> StepPlan | None:
    """The walk worth making for these runs, or None when asking per run is cheaper.

    Each run served saves a `/steps` request; a window reaching back `age` seconds costs
    about 1 + rate x age / page_limit pages. The plan serves the newest runs for which
    the walk costs no more than they would.
    """
    runs = sorted(wanting, key=lambda r: r.created_ns, reverse=True)
    if not runs:
        return None
    served, budget = 0, 0
    for k, record in enumerate(runs, start=1):
        age_s = max(0, now - record.created_ns + WINDOW_MARGIN_NS) / NS_PER_S
        pages = 1 + int((rate.per_s or 0.0) * age_s / page_limit)
        if pages > max_pages:
            break
        if pages <= k:
            served, budget = k, pages
    if served == 0:
        return None
    chosen = runs[:served]
    # Without a rate yet, the budget is what asking per run would cost.
    budget = min(max_pages, served) if rate.per_s is None else budget + 1
    return StepPlan(tuple(chosen), chosen[-1].created_ns - WINDOW_MARGIN_NS, budget)


@dataclass(slots=True)
class StepWalk:
    """One walk's reading: the planned runs' steps, and whether it reached the end."""

    plan: StepPlan
    page_limit: int
    pages: int = 0
    complete: bool = False
    steps: dict[str, dict[str, Step]] = field(default_factory=dict)
    read: int = 0

    def __post_init__(self) -> None:
        self.steps = {record.id: {} for record in self.plan.runs}

    def take(self, page: list[Step]) -> str | None:
        """Read one page; returns the cursor of the next one, None when the walk is done
        (complete when the page was short)."""
        self.pages += 1
        self.read += len(page)
        for step in page:
            mine = self.steps.get(step.run_id or "")
            if mine is not None:
                mine[step.id] = step  # a step read twice keeps its last reading
        if len(page) < self.page_limit:
            self.complete = True
            return None
        if self.pages >= self.plan.budget:
            return None  # cut short: gives nothing
        return page[-1].id

    def results(self) -> tuple[dict[str, list[Step]], list[RunRecord]]:
        """(steps of each run ready, runs with a pending step); nothing unless complete."""
        if not self.complete:
            return {}, []
        ready: dict[str, list[Step]] = {}
        waiting: list[RunRecord] = []
        for record in self.plan.runs:
            steps = list(self.steps[record.id].values())
            if any(step.status == "pending" for step in steps):
                waiting.append(record)
            else:
                ready[record.id] = steps
        return ready, waiting

    def learn(self, rate: StepRate, now: int) -> None:
        """Tell `rate` how dense the steps were. A walk cut short read only part of its
        window: the rate is at least twice that, so the next plan aims at newer runs."""
        window_s = (now - self.plan.start_ns) / NS_PER_S
        if self.complete:
            rate.learn(self.read, window_s)
        elif window_s > 0 and 2 * self.read / window_s > (rate.per_s or 0.0):
            rate.learn(2 * self.read, window_s)
