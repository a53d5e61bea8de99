"""Fetches the pages a `Walk` asks for, checking each against its cursor (see direction.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable

from exporter.core.listing.direction import Answer, CursorDirection, classify, other
from exporter.core.listing.walk import Key, PageResult, Walk
from exporter.letta.client import MAX_LIST_LIMIT, LettaClient, Page
from exporter.letta.errors import LettaNotFound
from exporter.letta.models import CursorParam

log = logging.getLogger(__name__)


class RunPager:
    """One per Letta server: follows which cursor parameter lists older runs there."""

    def __init__(
        self,
        client: LettaClient,
        *,
        on_lost_cursor: Callable[[], None],
        on_direction_switch: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._on_lost_cursor = on_lost_cursor
        self._on_direction_switch = on_direction_switch
        self.direction = CursorDirection()

    def cursor_param(self) -> str:
        """The cursor parameter in force (`letta_exporter_list_cursor_info`)."""
        return self.direction.label

    async def pages(
        self, walk: Walk, *, page_size: int, max_pages: int, active: bool, first_limit: int = 0
    ) -> AsyncGenerator[PageResult, None]:
        """The pages of `walk`, newest first, until it is done or stalls (or `max_pages`).

        `first_limit` sizes the first request (default `page_size`); later ones follow
        `next_limit`. Raises LettaError when Letta fails.
        """
        limit = first_limit or page_size
        for _ in range(max_pages):
            result = await self.next_page(walk, limit, active=active)
            yield result
            if result.done or result.stalled:
                return
            limit = next_limit(result, limit, page_size)

    async def next_page(self, walk: Walk, limit: int, *, active: bool) -> PageResult:
        """Fetch and feed one page of `walk`; raises LettaError when Letta fails."""
        can_widen = limit < MAX_LIST_LIMIT
        try:
            if not walk.cursors:
                page = await self._client.list_runs(limit=limit, active=active)
            else:
                page = await self._older_page(walk.cursors[0], limit, active)
            result = walk.feed(page.runs, page.raw_count, limit, can_widen=can_widen)
        except LettaNotFound:
            if not walk.cursors:
                raise
            result = walk.drop_cursor()  # servers that check cursors answer 404 (§4.6)
        if result.lost_cursor:
            self._on_lost_cursor()
            log.warning("Letta no longer knows the list cursor (run deleted?); recovering")
        return result

    async def _older_page(self, cursor: tuple[str, Key], limit: int, active: bool) -> Page:
        """The page older than `cursor`, whichever parameter lists it on this server.

        The parameter in force is asked first; an answer that is not clearly older makes
        the other one asked once (an idle cycle never gets here: its head page has no
        cursor). When neither lists older runs, the first answer goes to the walk, which
        treats it as a lost cursor.
        """
        cursor_id, key = cursor
        first = self.direction.param
        page = await self._ask(cursor_id, first, limit, active)
        answer = classify(_keys(page), key)
        if answer is Answer.OLDER:
            self._evidence(first)
            return page
        second = other(first)
        # A 404 here (the cursor run deleted meanwhile) is a lost cursor, as for the first.
        flipped = await self._ask(cursor_id, second, limit, active)
        flipped_answer = classify(_keys(flipped), key)
        # Rows of the cursor's own second against nothing tell no direction on a server
        # comparing cursors at whole seconds (near the bottom of the list there, the
        # newer direction answers with those rows, the older one with none).
        telling = {answer, flipped_answer} != {Answer.SAME_SECOND, Answer.EMPTY}
        if flipped_answer > answer:
            if telling:
                self._evidence(second)
            return flipped
        if answer > flipped_answer and telling:
            self._evidence(first)
        return page

    def _evidence(self, older: CursorParam) -> None:
        direction = self.direction
        was, switches = direction.label, direction.switches
        if not direction.evidence(older):
            return
        if direction.switches > switches:
            self._on_direction_switch()
            log.warning("list cursors: %r lists older runs on this server now, not %r", older, was)
        else:
            log.info("list cursors: %r lists older runs on this server", older)

    async def _ask(self, cursor_id: str, param: CursorParam, limit: int, active: bool) -> Page:
        return await self._client.list_runs(
            limit=limit, cursor=cursor_id, cursor_param=param, active=active
        )


def _keys(page: Page) -> list[Key]:
    return [(run.created_ns, run.id) for run in page.runs]


def next_limit(result: PageResult, limit: int, page_size: int) -> int:
    """Double the limit to get past a page inside one second; else the normal size."""
    if result.widen:
        return min(MAX_LIST_LIMIT, limit * 2)
    # A widened page stays wide: the next one starts by re-reading its tail second.
    return limit if result.retry else max(limit, page_size)
