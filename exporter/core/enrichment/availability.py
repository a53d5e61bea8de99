"""Which enrichment endpoints Letta serves, learnt from how it answers them.

A server may lack an endpoint: Letta Cloud documents no `/v1/runs/{id}/metrics`, a
self-hosted server without ClickHouse answers `/trace` with 501. An endpoint that
answers 404, 405 or 501 for `RUNS_TO_DECIDE` runs in a row that still exist is "not
served here": it is not asked (runs count without it, or with its fallback) until a
re-check every `RECHECK_NS` lets one run ask again. Any useful answer makes it served.
Pure state: the poller does the asking and tells this module what came back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

RUNS_TO_DECIDE: Final = 3
RECHECK_NS: Final = 300 * NS_PER_S


@dataclass(slots=True)
class _Endpoint:
    misses: int = 0
    down: bool = False
    recheck_at_ns: int = 0


class EndpointAvailability:
    """Served or not, per enrichment endpoint (names as in the enrichment metrics)."""

    def __init__(
        self, *, runs_to_decide: int = RUNS_TO_DECIDE, recheck_ns: int = RECHECK_NS
    ) -> None:
        self._runs_to_decide = runs_to_decide
        self._recheck_ns = recheck_ns
        self._endpoints: dict[str, _Endpoint] = {}

    def register(self, *endpoints: str) -> None:
        """Endpoints shown (as served) before they are first asked."""
        for endpoint in endpoints:
            self._endpoints.setdefault(endpoint, _Endpoint())

    def should_ask(self, endpoint: str, now_ns: int) -> bool:
        """True unless the endpoint is not served; once per re-check period, True for
        one caller even then (the re-check)."""
        state = self._endpoints.setdefault(endpoint, _Endpoint())
        if not state.down:
            return True
        if now_ns < state.recheck_at_ns:
            return False
        state.recheck_at_ns = now_ns + self._recheck_ns
        return True

    def answered(self, endpoint: str) -> None:
        """The endpoint gave a useful answer: it is served."""
        state = self._endpoints.setdefault(endpoint, _Endpoint())
        if state.down:
            log.info("Letta serves %s again; asking it for every run", endpoint)
        state.misses = 0
        state.down = False

    def not_served(self, endpoint: str, now_ns: int, status: str) -> None:
        """The endpoint answered `status` (404/405/501) for a run that exists."""
        state = self._endpoints.setdefault(endpoint, _Endpoint())
        if state.down:
            return  # a failed re-check: the next one is already scheduled
        state.misses += 1
        if state.misses < self._runs_to_decide:
            return
        state.down = True
        state.recheck_at_ns = now_ns + self._recheck_ns
        log.warning(
            "Letta does not serve %s here (%s for %d runs that exist): counting runs "
            "without it, asking again every %.0f s",
            endpoint,
            status,
            state.misses,
            self._recheck_ns / NS_PER_S,
        )

    def up(self) -> dict[str, bool]:
        """Every endpoint asked so far: True while served."""
        # list(): a web config reload reads this on a web thread while the poll loop may add one.
        return {name: not state.down for name, state in list(self._endpoints.items())}
