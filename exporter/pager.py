"""Fetches the pages a `Walk` asks for: cursor direction probed once, lost cursors counted."""

from __future__ import annotations

import logging
from collections.abc import Callable

from exporter.letta.client import MAX_LIST_LIMIT, CursorParam, LettaClient
from exporter.letta.errors import LettaNotFound
from exporter.walk import StepResult, Walk

log = logging.getLogger(__name__)


class RunPager:
    """One per Letta server: remembers which cursor parameter lists older runs there."""

    def __init__(self, client: LettaClient, *, on_lost_cursor: Callable[[], None]) -> None:
        self._client = client
        self._on_lost_cursor = on_lost_cursor
        self._cursor_param: CursorParam | None = None

    async def next_page(self, walk: Walk, limit: int, *, active: bool) -> StepResult:
        """Fetch and feed one page of `walk`; raises LettaError when Letta fails."""
        cursor = walk.cursor()
        if cursor is not None and self._cursor_param is None:
            # Asked only when a second page is needed, so an idle cycle costs 1 request.
            self._cursor_param = await self._client.probe_cursor_param() or "before"
            log.info("list cursors: %r lists older runs on this server", self._cursor_param)
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
