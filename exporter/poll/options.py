"""How the poll cycle pages and paces itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollOptions:
    """Page sizes, limits and the poll interval."""

    interval_s: float = 15.0
    page_size: int = 1000
    max_pages: int = 100
    backfill_ns: int | None = None
    enrich_concurrency: int = 8
    enrich_batch: int = 5000
    max_enrich_backlog: int = 20_000
