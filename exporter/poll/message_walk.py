"""The tools of the cycle's finished runs from one walk down `GET /v1/messages/`.

Replaces, for the runs it covers, `/v1/runs/{id}/metrics` plus the `/v1/tools/{id}`
lookups (or each run's own messages): a few pages a cycle instead of a request or more
per run, and call counts for every run. The rules (how far, which runs are covered) are
`exporter.core.enrichment.tool_walk`'s; runs it does not cover keep the per-run path.
"""

from __future__ import annotations

import logging
from typing import Final

from exporter.core.enrichment.availability import RECHECK_NS
from exporter.core.enrichment.queue import EnrichmentQueue
from exporter.core.enrichment.tool_walk import PAGE_LIMIT, MessageRate, ToolWalk, plan_walk
from exporter.core.runs.record import RunRecord
from exporter.letta.client import LettaClient
from exporter.letta.errors import (
    LettaBadResponse,
    LettaError,
    LettaNotFound,
    LettaNotImplemented,
    LettaRequestError,
)
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

ROUTE: Final = "GET /v1/messages/"


class MessageWalk:
    """Serves the tools of due runs from one messages walk per cycle, where it pays."""

    def __init__(self, client: LettaClient, enrichment: EnrichmentQueue) -> None:
        self._client = client
        self._enrichment = enrichment
        self._rate = MessageRate()
        # Not served (404/405/4xx without a cursor): not asked again before this.
        self._not_before_ns = 0
        self._limit = PAGE_LIMIT

    async def serve(self, due: list[RunRecord], now: int) -> int:
        """Answer the tools of the due runs the walk covers; returns how many."""
        wanting = [r for r in due if r.enrich is not None and "metrics" in r.enrich.pending]
        if not wanting or now < self._not_before_ns:
            return 0
        plan = plan_walk(wanting, now, self._rate, page_limit=min(PAGE_LIMIT, self._limit * 2))
        if plan is None:
            return 0
        walk = ToolWalk(plan, self._enrichment.completed_at)
        # A page cut for its size shrank the limit; each walk tries twice as many again.
        self._limit = min(PAGE_LIMIT, self._limit * 2)
        cursor: str | None = None
        while walk.pages < plan.budget:
            try:
                page = await self._client.list_messages(limit=self._limit, before=cursor)
            except LettaBadResponse as exc:
                if exc.reason != "too_large" or self._limit == 1:
                    log.debug("messages walk stopped: %s", exc)
                    break
                walk.pages += 1  # it cost a request all the same
                self._limit = max(1, self._limit // 4)  # large tool returns: fewer at once
                continue
            except (LettaNotFound, LettaNotImplemented, LettaRequestError) as exc:
                if cursor is None:
                    self._not_served(exc, now)
                    return 0
                # The cursor's message is gone (its agent was deleted): stop here; what
                # was read still covers the runs it covers.
                log.debug("messages walk stopped at a vanished cursor: %s", exc)
                break
            except LettaError as exc:
                log.debug("messages walk stopped: %s", exc)
                break
            cursor = walk.take(page)
            if cursor is None:
                break
        walk.learn(self._rate)
        served = walk.served()
        for record in plan.runs:
            calls = served.get(record.id)
            if calls is not None and record.enrich is not None:
                self._enrichment.answered_tool_calls(record, calls)
        return len(served)

    def _not_served(self, exc: LettaError, now: int) -> None:
        if self._not_before_ns == 0:
            log.warning(
                "Letta does not serve %s (%s): tools come from each run; asking again every %.0f s",
                ROUTE,
                exc,
                RECHECK_NS / NS_PER_S,
            )
        self._not_before_ns = now + RECHECK_NS
