"""Fetches the pages a `Walk` asks for: cursor direction probed once, lost cursors counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from exporter.letta.client import MAX_LIST_LIMIT, CursorParam, LettaClient
from exporter.letta.errors import LettaNotFound
from exporter.walk import StepResult, Walk

log = logging.getLogger(__name__)

_PROBE_RETRY_S: Final = 5.0


class RunPager:
    """One per Letta server: remembers which cursor parameter lists older runs there."""

    def __init__(self, client: LettaClient, *, on_lost_cursor: Callable[[], None]) -> None:
        self._client = client
        self._on_lost_cursor = on_lost_cursor
        self._cursor_param: CursorParam | None = None
        self._probe_after = 0.0

    async def _probe(self) -> None:
        # Asked only when a second page is needed, so an idle cycle costs 1 request. An
        # inconclusive probe (too few runs, a burst inside two seconds) is not trusted
        # forever: "before" serves meanwhile (right on 0.16.8) and the probe is retried.
        now = time.monotonic()
        if now < self._probe_after:
            return
        self._cursor_param = await self._client.probe_cursor_param()
        if self._cursor_param is None:
            self._probe_after = now + _PROBE_RETRY_S
            log.info("list cursors: cannot tell the direction yet; assuming 'before'")
        else:
            log.info("list cursors: %r lists older runs on this server", self._cursor_param)

    async def next_page(self, walk: Walk, limit: int, *, active: bool) -> StepResult:
        """Fetch and feed one page of `walk`; raises LettaError when Letta fails."""
        cursor = walk.cursor()
        if cursor is not None and self._cursor_param is None:
            await self._probe()
        try:
            page = await self._client.list_runs(
                limit=limit,
                cursor=cursor,
                cursor_param=self._cursor_param or "before",
                active=active,
            )
            step = walk.feed(page.runs, page.raw_count, limit, can_widen=limit < MAX_LIST_LIMIT)
        except LettaNotFound:
            if cursor is None:
                raise
            step = walk.drop_cursor()  # servers that check cursors answer 404 (§4.6)
        if step.lost_cursor:
            self._on_lost_cursor()
            log.warning("Letta no longer knows the list cursor (run deleted?); recovering")
        return step


def next_limit(step: StepResult, limit: int, page_size: int) -> int:
    """Double the limit to get past a page inside one second; else the normal size."""
    if step.widen:
        return min(MAX_LIST_LIMIT, limit * 2)
    # A widened page stays wide: the next one starts by re-reading its tail second.
    return limit if step.retry else max(limit, page_size)
