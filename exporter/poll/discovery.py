"""Finding runs: each cycle walks `GET /v1/runs` from the head down to the dedupe floor.

A walk that does not reach its floor in one cycle (a backfill, a catch-up after
downtime) is kept as the pending walk (state file meta) and continues next cycle.
Discovery also knows how far back every run has been listed, which bounds how late a
count can be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import aclosing
from typing import Final

from exporter.core.tracker import Tracker
from exporter.poll.options import PollOptions
from exporter.poll.pager import RunPager
from exporter.series import catalogue as m

log = logging.getLogger(__name__)

_MIN_FIRST_PAGE: Final = 20


class Discovery:
    """Walks the runs list each cycle and feeds every run it has not seen to the run book."""

    def __init__(
        self,
        tracker: Tracker,
        pager: RunPager,
        options: PollOptions,
        *,
        first_start: bool,
        now: int,
    ) -> None:
        self._tracker = tracker
        self._pager = pager
        self._options = options
        self.first_start = first_start
        self._last_head_rows = options.page_size
        # Until a walk reaches its floor, what the state says was listed.
        listed = tracker.listed_until_ns()
        self._listed_until_ns = listed if listed is not None else now
        self._walk_started_ns = self._listed_until_ns
        self._listed_all = False
        # On a fresh state, runs that finished before the exporter started are history
        # (backfill): they wait from the start, not from their completion.
        self._history_until_ns = now if first_start else 0

    async def walk(self, now: int, backpressure: Callable[[], bool]) -> None:
        """Walk from the head (or the pending walk's position) towards the floor."""
        tracker = self._tracker
        if tracker.pending_walk() is None:
            self._walk_started_ns = now
        walk = tracker.start_walk(
            now, first_start=self.first_start, backfill_ns=self._options.backfill_ns
        )
        self._listed_all = False
        walk.new_cycle()
        resumed = walk.pos is not None
        first_limit = self._options.page_size
        if not resumed:
            # The head page only has to reach back one lookback window: size it on the
            # last cycle so an idle cycle reads tens of runs, not a thousand.
            first_limit = min(first_limit, max(_MIN_FIRST_PAGE, 2 * self._last_head_rows + 10))
        if backpressure():
            return  # the walk waits (persisted) until enrichment catches up
        head_rows = 0
        pages = self._pager.pages(
            walk,
            page_size=self._options.page_size,
            max_pages=self._options.max_pages,
            active=False,
            first_limit=first_limit,
        )
        # Closed at once when the walk pauses part-way (stall, backpressure), not at GC.
        async with aclosing(pages):
            async for page in pages:
                tracker.observe_page(page, walk, now)
                head_rows += len(page.fresh)
                if page.stalled:
                    tracker.inc(m.PAGINATION_STALLS)
                    log.warning("a runs page made no progress; ending this walk until next cycle")
                    if not walk.first and not resumed:
                        tracker.drop_walk()
                    return
                if page.done:
                    tracker.walk_done(self._walk_started_ns)
                    self._listed_all = True
                    self._listed_until_ns = self._walk_started_ns
                    if not resumed:
                        self._last_head_rows = head_rows
                    return
                if backpressure():
                    return

    def counting_lag_ns(self, now: int) -> int:
        """Age of the oldest finished run not counted yet: known ones by completed_at;
        while a walk has not reached its floor, unlisted runs may have finished as long
        ago as the last complete listing began."""
        oldest = self._tracker.oldest_uncounted_finish_ns()
        lag = now - max(oldest, self._history_until_ns) if oldest is not None else 0
        if not self._listed_all:
            lag = max(lag, now - self._listed_until_ns)
        return max(0, lag)
