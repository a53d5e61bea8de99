"""Following runs the list no longer shows: open runs, runs past their grace period and
runs that wait for an approval are read with `GET /v1/runs/{id}` (or one active
listing when several open runs went unseen)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from exporter.core.listing.walk import Walk
from exporter.core.tracker import Tracker
from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaError, LettaNotFound
from exporter.poll.options import PollOptions
from exporter.poll.pager import RunPager
from exporter.series import catalogue as m

log = logging.getLogger(__name__)

_GET_CONCURRENCY: Final = 8


class Follower:
    """Refreshes the runs the core follows until they end."""

    def __init__(
        self,
        client: LettaClient,
        tracker: Tracker,
        pager: RunPager,
        options: PollOptions,
        clock_ns: Callable[[], int],
    ) -> None:
        self._client = client
        self._tracker = tracker
        self._pager = pager
        self._options = options
        self._now = clock_ns

    async def refresh_open(self, since: int, *, first_start: bool) -> None:
        """Look again at open runs not observed since `since` (this cycle's start)."""
        tracker = self._tracker
        now = self._now()
        unseen = tracker.open_due_refresh(since, now)
        if first_start or len(unseen) > 1:
            floor = 0 if first_start else min(r.created_ns for r in unseen)
            await self._list_active(floor, now)
            unseen = tracker.open_due_refresh(since, now)
        await self._get_runs([r.id for r in unseen], now, self._vanished_run)

    async def refresh_settling(self, now: int) -> None:
        """Observe each finished run once more after its grace period, before counting."""
        due = self._tracker.settling_due_refresh(now)
        await self._get_runs([r.id for r in due], now, self._vanished_run)

    async def refresh_approvals(self, since: int) -> None:
        """GET each waiting run the walk no longer lists, so a cancel is seen; within
        the re-walked window this costs nothing."""
        tracker = self._tracker
        await self._get_runs(
            tracker.approval_waits_due_refresh(since), self._now(), tracker.approval_wait_vanished
        )

    def _vanished_run(self, run_id: str) -> None:
        log.info("run %s disappeared (404) while followed", run_id)
        self._tracker.vanished(run_id, self._now())

    async def _list_active(self, floor: int, now: int) -> None:
        tracker = self._tracker
        pages = self._pager.pages(
            Walk(floor_ns=floor),
            page_size=self._options.page_size,
            max_pages=self._options.max_pages,
            active=True,
        )
        async for page in pages:
            for run in page.fresh:
                tracker.observe(run, now, follow_old=True)
            if page.stalled:
                tracker.inc(m.PAGINATION_STALLS)

    async def _get_runs(
        self, run_ids: list[str], now: int, vanished: Callable[[str], None]
    ) -> None:
        """GET each run and observe it; `vanished` takes the ids that answer 404."""
        if not run_ids:
            return
        semaphore = asyncio.Semaphore(_GET_CONCURRENCY)
        tracker = self._tracker
        failures: list[LettaError] = []

        async def refresh(run_id: str) -> None:
            async with semaphore:
                try:
                    run = await self._client.get_run(run_id)
                except LettaNotFound:
                    vanished(run_id)
                    return
                except LettaError as exc:
                    # Kept out of the TaskGroup, which would wrap it in an ExceptionGroup
                    # that the cycle's `except LettaError` cannot catch.
                    failures.append(exc)
                    return
            tracker.observe(run, now, follow_old=True)

        async with asyncio.TaskGroup() as group:
            for run_id in run_ids:
                group.create_task(refresh(run_id))
        if failures:
            raise failures[0]  # the other runs were refreshed; these wait for next cycle
