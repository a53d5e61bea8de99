"""The steps (tokens, step counts) of the cycle's finished runs from one `GET /v1/steps/`
walk, where Letta serves it (Cloud; 0.16.8 answers 400).

Replaces `/v1/runs/{id}/steps` for the runs it serves. The first page is the probe: a
400/404/405/501 there means not served, and the route is asked again every few minutes
(`RECHECK_NS`); runs then take the per-run path. The rules are
`exporter.core.enrichment.step_walk`'s.
"""

from __future__ import annotations

import logging
from typing import Final

from exporter.core.enrichment.availability import RECHECK_NS
from exporter.core.enrichment.queue import EnrichmentQueue
from exporter.core.enrichment.step_walk import PAGE_LIMIT, StepRate, StepWalk, plan_step_walk
from exporter.core.runs.record import RunRecord
from exporter.letta.client import LettaClient
from exporter.letta.errors import (
    LettaError,
    LettaNotFound,
    LettaNotImplemented,
    LettaRequestError,
)
from exporter.poll.scope import ScopeCheck
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

ROUTE: Final = "GET /v1/steps/"
PENDING_RETRY_NS: Final = 2 * NS_PER_S


class StepsWalk:
    """Serves the steps of due runs from one steps walk per cycle, where it pays."""

    def __init__(self, client: LettaClient, enrichment: EnrichmentQueue, scope: ScopeCheck) -> None:
        self._client = client
        self._enrichment = enrichment
        self._scope = scope
        self._rate = StepRate()
        self._not_before_ns = 0
        self._announced = False

    async def serve(self, due: list[RunRecord], now: int) -> int:
        """Answer the steps of the due runs one complete walk read; returns how many."""
        wanting = [r for r in due if r.enrich is not None and "steps" in r.enrich.pending]
        if not wanting or now < self._not_before_ns:
            return 0
        plan = plan_step_walk(wanting, now, self._rate, page_limit=PAGE_LIMIT)
        if plan is None:
            return 0
        walk = StepWalk(plan, PAGE_LIMIT)
        cursor: str | None = None
        while True:
            try:
                page = await self._client.list_all_steps(
                    start_ns=plan.start_ns, limit=PAGE_LIMIT, after=cursor
                )
            except (LettaNotFound, LettaNotImplemented, LettaRequestError) as exc:
                if cursor is None:
                    self._not_served(exc, now)
                return 0  # a vanished cursor: this walk gives nothing
            except LettaError as exc:
                log.debug("steps walk stopped: %s", exc)
                return 0
            cursor = walk.take(page)
            if cursor is None:
                break
        walk.learn(self._rate, now)
        ready, waiting = walk.results()
        for record in waiting:
            if record.enrich is not None:
                # A step still pending: its tokens are not final. The next walk reads it.
                self._enrichment.defer(record, now + PENDING_RETRY_NS)
        for record in plan.runs:
            steps = ready.get(record.id)
            if steps is not None and record.enrich is not None:
                self._scope.observe(steps)
                self._enrichment.answered_steps(record, steps)
        return len(ready)

    def _not_served(self, exc: LettaError, now: int) -> None:
        if not self._announced:
            self._announced = True
            log.info(
                "Letta does not serve %s (%s): steps come from each run; asking again every %.0f s",
                ROUTE,
                exc,
                RECHECK_NS / NS_PER_S,
            )
        self._not_before_ns = now + RECHECK_NS
