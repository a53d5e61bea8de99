"""The exporter's parts as the settings describe them, built in one place: `serve` starts
and stops what `build_exporter` returns, and the tests that run the cycle in-process
(`tests/cycle_rig.py`) build it the same way, on their own clocks."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from exporter.cli.client import client_from_settings
from exporter.cli.config import ConfigError, Settings, setting_error
from exporter.cli.prices import load_prices
from exporter.cli.publisher import Publisher
from exporter.core.counting.counter import ERROR_TYPE_LIMIT, RUN_TYPE_LIMIT
from exporter.core.counting.pricing import PriceTable
from exporter.core.labels import AgentFilter, CappedLabel
from exporter.core.options import TrackerOptions
from exporter.core.runs.run_info import TraceBuilder
from exporter.core.tracker import Tracker
from exporter.letta.client import LettaClient
from exporter.metrics.collector import RunsCollector
from exporter.metrics.snapshot import Readings
from exporter.poll.agent_names import UNKNOWN_REFRESH_S, AgentNames
from exporter.poll.backoff import Wait, wait_or_stop
from exporter.poll.cycle import Poller
from exporter.poll.options import PollOptions
from exporter.poll.scope import ScopeCheck
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import Checkpoint, Loaded, StateLocationError
from exporter.traces.otel_environment import resource_from_environment, sink_from_environment
from exporter.traces.run_tracer import RunTracer
from exporter.traces.shipper import ShipperOptions, SpanShipper
from exporter.traces.sink import SpanSink
from exporter.units import NS_PER_S
from exporter.web.config import load_web_config
from exporter.web.server import App, HttpServer
from exporter.web.status import StatusPage
from exporter.web.watcher import WebConfigWatcher

log = logging.getLogger("exporter")


@dataclass(frozen=True, slots=True)
class Clocks:
    """Where the exporter's time comes from; a test rig's moves only when it says."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """The client's waits (pacing, retries)."""
    wait: Wait = wait_or_stop
    """The poll loop's wait between cycles, cut short by a stop."""


@dataclass(slots=True)
class Exporter:
    """Every part of a running exporter, wired; `run` polls (and ships spans) until stopped."""

    settings: Settings
    checkpoint: Checkpoint
    client: LettaClient
    poller: Poller
    registry: CollectorRegistry
    """What a scrape of /metrics renders."""
    app: App
    """/metrics, the status page and the health endpoints, as the HTTP server serves them."""
    web: WebConfigWatcher | None
    sink: SpanSink | None
    shipper: SpanShipper | None

    def listen(self) -> HttpServer:
        """The HTTP server, bound to `--web.listen-address` (not serving yet)."""
        host, port = self.settings.listen_host_port
        try:
            return HttpServer(self.app, host, port, web=self.web)
        except OSError as exc:
            raise setting_error("web_listen_address", _cannot_listen(host, port, exc)) from None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, and ship spans when tracing is on, until `stop` is set."""
        shipper = self.shipper
        shipping = asyncio.create_task(shipper.run(stop)) if shipper is not None else None
        try:
            await self.poller.run(stop)
        finally:
            if shipping is not None:
                stop.set()
                await shipping

    async def close(self) -> None:
        """Let go of the OTLP exporter, the connections and the state file."""
        # Spans not exported yet stay in the outbox for the next start: nothing is lost.
        if self.sink is not None:
            self.sink.shutdown()
        await self.client.aclose()
        self.checkpoint.close()


def build_exporter(
    settings: Settings, environ: Mapping[str, str], clocks: Clocks = Clocks()
) -> Exporter:
    """The exporter the settings and the `OTEL_*` variables in `environ` describe,
    restored from its state file, its first snapshot published.

    Raises `ConfigError` for a setting that cannot work, `CheckpointError` for a state
    file whose content cannot be used and `PriceFileError`/`WebConfigError` for those
    files.
    """
    prices = load_prices(settings.cost_price_file) if settings.cost_price_file else None
    web_security = load_web_config(settings.web_config_file) if settings.web_config_file else None
    checkpoint, loaded, aggregates = _open_state(settings)
    sink = _span_sink(environ, aggregates)
    tracer = RunTracer(resource_from_environment(environ)) if sink is not None else None
    tracker = restore_tracker(
        settings,
        loaded,
        aggregates,
        prices=prices,
        build_trace=tracer.build if tracer is not None else None,
    )
    _log_start(settings, loaded, tracker)

    collector = RunsCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    status_page = StatusPage(clock=clocks.wall)
    publisher = Publisher(collector, status_page)
    web = (
        WebConfigWatcher(web_security, on_reload=publisher.refresh)
        if web_security is not None
        else None
    )
    requests = RequestMetrics(aggregates, after=publisher.refresh)
    client = client_from_settings(
        settings,
        on_request=requests.request,
        on_invalid_item=requests.invalid_item,
        on_postponed=requests.postponed,
        clock=clocks.monotonic,
        sleep=clocks.sleep,
    )
    shipper = (
        SpanShipper(
            sink,
            checkpoint,
            aggregates,
            ShipperOptions(max_pending_runs=settings.traces_max_pending),
        )
        if sink is not None
        else None
    )
    scope = ScopeCheck(settings.project_id, settings.project)
    if scope.verified is not None and not settings.enrich_steps:
        log.warning("--enrich.steps=false: the project scope cannot be verified")
    poller = Poller(
        client,
        tracker,
        checkpoint,
        poll_options(settings),
        publish=publisher.cycle,
        first_start=loaded.fresh,
        clock=clocks.wall,
        spans_pending=lambda: shipper.pending_runs if shipper is not None else 0,
        agent_names=AgentNames(
            client,
            # A new agent is named within two cycles, at most every 30 s.
            unknown_refresh_s=min(UNKNOWN_REFRESH_S, 2 * settings.poll_interval),
            clock=clocks.monotonic,
        )
        if settings.agents_names
        else None,
        scope=scope,
        tracer=tracer,
        key_file=settings.api_key_file,
        monotonic=clocks.monotonic,
        wait=clocks.wait,
    )
    publisher.read_from(
        lambda: Readings(
            request_rate=client.pace.rate(),
            endpoints_up=tuple(poller.endpoints.up().items()),
            scope_verified=scope.verified,
            web_config_ok=web is None or web.last_reload_ok,
        )
    )
    publisher.cycle(poller.snapshot())
    app = App(
        registry,
        publisher.health,
        stale_after_s=max(300.0, 10 * settings.poll_interval),
        web=web,
        health_open=settings.web_health_open,
        status_page=status_page.render,
    )
    return Exporter(
        settings=settings,
        checkpoint=checkpoint,
        client=client,
        poller=poller,
        registry=registry,
        app=app,
        web=web,
        sink=sink,
        shipper=shipper,
    )


def _open_state(settings: Settings) -> tuple[Checkpoint, Loaded, Aggregates]:
    """The state file, locked; what it holds; the counters it restores."""
    try:
        checkpoint = Checkpoint(settings.state_path)
    except StateLocationError as exc:
        raise setting_error("state_path", str(exc)) from None
    loaded = checkpoint.load()
    aggregates = Aggregates()
    aggregates.load(loaded.series)
    return checkpoint, loaded, aggregates


def _span_sink(environ: Mapping[str, str], aggregates: Aggregates) -> SpanSink | None:
    """The OTLP sink the `OTEL_*` variables ask for, or None (tracing off)."""
    try:
        sink = sink_from_environment(
            environ,
            on_result=lambda result, spans: aggregates.inc(m.SPANS_EXPORTED, (result,), spans),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid OpenTelemetry setting: {exc}") from None
    log.info(
        "traces: %s",
        "each finished run is exported as a trace (OTEL_* settings)"
        if sink is not None
        else "off (set OTEL_EXPORTER_OTLP_ENDPOINT to export runs as traces)",
    )
    return sink


def _log_start(settings: Settings, loaded: Loaded, tracker: Tracker) -> None:
    if loaded.fresh:
        how = (
            f"counting runs created in the last {settings.backfill:g}s (backfill)"
            if settings.backfill is not None
            else "counting runs that finish from now on"
        )
        log.info("no state in %s: first start, %s", settings.state_path, how)
        return
    if settings.backfill is not None:
        log.warning("--backfill ignored: %s already holds state", settings.state_path)
    log.info("resuming from %s (%d runs tracked)", settings.state_path, tracker.tracked_count())


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: another process is listening there"
    return f"cannot listen on {host}:{port} ({exc.strerror or exc})"


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
    tracker.load(loaded.records, loaded.meta)
    return tracker


class RequestMetrics:
    """The client's observers, counting into the aggregates."""

    def __init__(self, aggregates: Aggregates, *, after: Callable[[], None] = lambda: None) -> None:
        self._aggregates = aggregates
        # The pace, the endpoints served and the scope change only as answers come in.
        self._after = after

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        """One attempt's outcome and duration."""
        self._aggregates.inc(m.API_REQUESTS, (endpoint, code))
        self._aggregates.add(m.API_REQUEST_DURATION, (endpoint,), seconds)
        self._after()

    def invalid_item(self, endpoint: str, reason: str) -> None:
        """An item of a list answer that did not validate (skipped, not fatal)."""
        self._aggregates.inc(m.INVALID_ITEMS, (endpoint,))

    def postponed(self, endpoint: str) -> None:
        """A request Letta asked to make later."""
        self._aggregates.inc(m.REQUESTS_POSTPONED, (endpoint,))
