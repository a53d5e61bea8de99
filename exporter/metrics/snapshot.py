"""The read-only view a scrape renders: taken after each committed cycle, published again
when its readings change between cycles."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from exporter.core.views import ApprovalWaitView, DeadlockView, OpenRunView
from exporter.series.aggregates import Aggregates


@dataclass(slots=True)
class Health:
    """How polling is going; what /healthz, /readyz and the letta_up gauge report."""

    up: bool = False
    ready: bool = False
    last_success_s: float | None = None
    last_attempt_s: float | None = None
    poll_duration_s: float = 0.0
    backoff_s: float = 0.0
    """The wait after the last cycle because it failed; 0 after a good one."""

    def mark_success(self, now_s: float) -> None:
        """A cycle in which every request to Letta succeeded."""
        self.up = True
        self.ready = True
        self.last_success_s = now_s
        self.last_attempt_s = now_s

    def mark_failure(self, now_s: float) -> None:
        """A cycle in which a request to Letta failed."""
        self.up = False
        self.last_attempt_s = now_s

    def copy(self) -> Health:
        """A copy for a snapshot, so later cycles do not change a published one."""
        return copy.copy(self)


@dataclass(frozen=True, slots=True)
class Readings:
    """What changes between cycles: read when a snapshot is published and again when it
    may have changed (after each answer from Letta, after a web config reload), so a
    scrape reads it here instead of asking the parts."""

    request_rate: float | None = None
    """Requests per second the pace allows; None while nothing caps them."""
    endpoints_up: tuple[tuple[str, bool], ...] = ()
    """(enrichment endpoint, served) for every endpoint asked so far."""
    scope_verified: bool | None = None
    """None without a project; else whether Letta's steps showed the scope applied."""
    web_config_ok: bool = True
    """Whether the last reload of --web.config.file loaded (True without one)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scrape shows; never mutated after it is published."""

    aggregates: Aggregates = field(default_factory=Aggregates)
    open_runs: tuple[OpenRunView, ...] = ()
    followed: int = 0
    enrichment_backlog: int = 0
    health: Health = field(default_factory=Health)
    backfill_remaining_s: float = 0.0
    spans_pending: int = 0
    agent_info: tuple[tuple[str, str], ...] = ()
    """(agent label, agent name) of the agents with a known name."""
    approval_waits: tuple[ApprovalWaitView, ...] = ()
    deadlocks: tuple[DeadlockView, ...] = ()
    cursor_param: str = "unknown"
    counting_lag_s: float = 0.0
    readings: Readings = field(default_factory=Readings)
