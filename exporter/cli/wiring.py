"""The parts the settings describe, built one way for `serve` and for the tests that
run the cycle in-process."""

from __future__ import annotations

from exporter.cli.config import Settings
from exporter.core.counting.counter import ERROR_TYPE_LIMIT, RUN_TYPE_LIMIT
from exporter.core.counting.pricing import PriceTable
from exporter.core.labels import AgentFilter, CappedLabel
from exporter.core.options import TrackerOptions
from exporter.core.runs.run_info import TraceBuilder
from exporter.core.tracker import Tracker
from exporter.poll.options import PollOptions
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import Loaded
from exporter.units import NS_PER_S


def tracker_options(settings: Settings) -> TrackerOptions:
    """Durations in the settings (seconds) as the tracker's nanoseconds."""
    return TrackerOptions(
        lookback_ns=int(settings.poll_lookback * NS_PER_S),
        grace_ns=int(settings.runs_grace_period * NS_PER_S),
        callback_wait_ns=int(settings.runs_callback_wait * NS_PER_S),
        stale_after_ns=int(settings.runs_stale_after * NS_PER_S),
        stale_refresh_ns=int(max(settings.poll_interval, 300) * NS_PER_S),
        forget_after_ns=int(settings.runs_forget_after * NS_PER_S),
        max_open_runs=settings.runs_max_open,
        enrich=settings.enrich_endpoints,
        enrich_max_attempts=settings.enrich_max_attempts,
        trace_delay_ns=int(settings.traces_settle_delay * NS_PER_S),
    )


def poll_options(settings: Settings) -> PollOptions:
    """How the poll cycle pages and paces itself, from the settings."""
    return PollOptions(
        interval_s=settings.poll_interval,
        page_size=settings.letta_page_size,
        max_pages=settings.poll_max_pages,
        backfill_ns=None if settings.backfill is None else int(settings.backfill * NS_PER_S),
        enrich_concurrency=settings.enrich_concurrency,
    )


def restore_tracker(
    settings: Settings,
    loaded: Loaded,
    aggregates: Aggregates,
    *,
    prices: PriceTable | None = None,
    build_trace: TraceBuilder | None = None,
) -> Tracker:
    """The tracker with the state file's records, positions, label values and tool names."""

    def capped(name: str, limit: int) -> CappedLabel:
        return CappedLabel(
            name,
            limit,
            admitted=loaded.label_values.get(name, ()),
            on_overflow=lambda label: aggregates.inc(m.LABEL_OVERFLOW, (label,)),
        )

    tracker = Tracker(
        tracker_options(settings),
        aggregates,
        capped("agent", settings.agents_label_limit),
        agent_allowed=AgentFilter(settings.agents_allow, settings.agents_deny),
        model_label=capped("model", settings.models_label_limit),
        tool_label=capped("tool", settings.tools_label_limit),
        error_type_label=capped("error_type", ERROR_TYPE_LIMIT),
        run_type_label=capped("run_type", RUN_TYPE_LIMIT),
        prices=prices,
        tool_names=loaded.tool_names,
        build_trace=build_trace,
    )
    tracker.runs.load(loaded.records, loaded.meta)
    return tracker


class RequestMetrics:
    """The client's observers, counting into the aggregates."""

    def __init__(self, aggregates: Aggregates) -> None:
        self._aggregates = aggregates

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        """One attempt's outcome and duration."""
        self._aggregates.inc(m.API_REQUESTS, (endpoint, code))
        self._aggregates.add(m.API_REQUEST_DURATION, (endpoint,), seconds)

    def invalid_item(self, endpoint: str, reason: str) -> None:
        """An item of a list answer that did not validate (skipped, not fatal)."""
        self._aggregates.inc(m.INVALID_ITEMS, (endpoint,))

    def postponed(self, endpoint: str) -> None:
        """A request Letta asked to make later."""
        self._aggregates.inc(m.REQUESTS_POSTPONED, (endpoint,))
