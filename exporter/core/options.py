"""The run lifecycle's timing and bounds."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.units import NS_PER_S


@dataclass(frozen=True, slots=True)
class TrackerOptions:
    """Timing and bounds, all in nanoseconds or counts."""

    lookback_ns: int = 300 * NS_PER_S
    grace_ns: int = 5 * NS_PER_S
    callback_wait_ns: int = 30 * NS_PER_S
    stale_after_ns: int = 3600 * NS_PER_S
    stale_refresh_ns: int = 300 * NS_PER_S
    forget_after_ns: int = 7 * 86400 * NS_PER_S
    max_open_runs: int = 100_000
    enrich: tuple[str, ...] = ()
    enrich_max_attempts: int = 5
    enrich_backoff_ns: int = 2 * NS_PER_S
    trace_delay_ns: int = 20 * NS_PER_S
