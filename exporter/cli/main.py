"""Command line: flags, wiring of the parts, signals and exit codes.

Exit codes: 0 after SIGTERM/SIGINT, 1 when the state file's content cannot be used, 2 for
an invalid setting or one that fails at start-up (port in use, state directory not
writable, state file held by another exporter), always as one sentence naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.cli import check
from exporter.cli.client import client_from_settings
from exporter.cli.config import (
    FLAGS,
    ConfigError,
    Settings,
    load_settings,
    setting_error,
    shown_default,
)
from exporter.cli.logs import configure
from exporter.cli.prices import PriceFileError, load_prices
from exporter.cli.wiring import RequestMetrics, poll_options, restore_tracker
from exporter.metrics.collector import RunsCollector
from exporter.metrics.snapshot import Snapshot
from exporter.poll.agent_names import UNKNOWN_REFRESH_S, AgentNames
from exporter.poll.cycle import Poller
from exporter.poll.scope import ScopeCheck
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import Checkpoint, CheckpointError, StateLocationError
from exporter.traces.otel_environment import resource_from_environment, sink_from_environment
from exporter.traces.run_tracer import RunTracer
from exporter.traces.shipper import ShipperOptions, SpanShipper
from exporter.traces.sink import SpanSink
from exporter.web.config import load_web_config
from exporter.web.errors import WebConfigError
from exporter.web.server import App, HttpServer
from exporter.web.status import StatusPage
from exporter.web.watcher import WebConfigWatcher

log = logging.getLogger("exporter")


def build_parser() -> argparse.ArgumentParser:
    """Flags with their environment variables in the help text."""
    parser = argparse.ArgumentParser(
        prog="letta-exporter",
        usage=(
            "letta-exporter [--flag=value ...]\n"
            "       letta-exporter check [--help] ...\n"
            "       letta-exporter demo [--flag=value ...]"
        ),
        description="Prometheus metrics and OpenTelemetry traces for Letta agent runs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"letta-exporter {__version__}")
    for flag in FLAGS:
        default = shown_default(flag.field)
        shown = "" if default is None else f", default {default}"
        parser.add_argument(flag.flag, dest=flag.field, help=f"{flag.help} (${flag.env}{shown})")
    return parser


_EPILOG: Final = """\
commands:
  check                 one look: the runs of a window summarised, exit 1 if any
                        failed, 2 on errors (letta-exporter check --help)
  check --wait          wait for named runs (or an agent's open runs) to end
  demo                  the exporter against a simulated Letta on :9834, no server
                        needed; its state in a temporary folder, Ctrl-C stops it

environment:
  LETTA_API_KEY         the Letta API key (Cloud) or server password (self-hosted);
                        or LETTA_API_KEY_FILE, re-read when it changes
  LETTA_BASE_URL        the server root, without /v1 (as --letta.url)
  LETTA_CUSTOM_HEADERS  extra request headers, as letta-client reads them
  OTEL_EXPORTER_OTLP_ENDPOINT
                        export each finished run as a trace (the OTEL_* variables)
  SSL_CERT_FILE         a CA bundle for a Letta behind a private CA
Every flag can also be set by the variable named in its help.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `letta-exporter` command (`letta-exporter check ...`: one look)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:
        return check.main(argv[1:])
    if argv[:1] == ["demo"]:
        from exporter.cli import demo  # here: demo imports this module's parser and serve

        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(vars(args))
    except ConfigError as exc:
        print(f"letta-exporter: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    return run_serve(settings)


def run_serve(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; the exit code (2 bad setting, 1 unusable state)."""
    try:
        return asyncio.run(serve(settings))
    except (PriceFileError, ConfigError, WebConfigError) as exc:
        print(f"letta-exporter: {exc}", file=sys.stderr)
        return 2
    except CheckpointError as exc:
        log.error("%s", exc)
        return 1


async def serve(settings: Settings) -> int:
    """Run the exporter until SIGTERM or SIGINT."""
    prices = load_prices(settings.cost_price_file) if settings.cost_price_file else None
    web = (
        WebConfigWatcher(load_web_config(settings.web_config_file))
        if settings.web_config_file
        else None
    )
    try:
        checkpoint = Checkpoint(settings.state_path)
    except StateLocationError as exc:
        raise setting_error("state_path", str(exc)) from None
    loaded = checkpoint.load()
    aggregates = Aggregates()
    aggregates.load(loaded.series)
    try:
        sink = sink_from_environment(
            os.environ,
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

    tracer = RunTracer(resource_from_environment(os.environ)) if sink is not None else None
    tracker = restore_tracker(
        settings,
        loaded,
        aggregates,
        prices=prices,
        build_trace=tracer.build if tracer is not None else None,
    )
    if loaded.fresh:
        how = (
            f"counting runs created in the last {settings.backfill:g}s (backfill)"
            if settings.backfill is not None
            else "counting runs that finish from now on"
        )
        log.info("no state in %s: first start, %s", settings.state_path, how)
    else:
        if settings.backfill is not None:
            log.warning("--backfill ignored: %s already holds state", settings.state_path)
        log.info(
            "resuming from %s (%d runs tracked)", settings.state_path, len(tracker.runs.records)
        )

    requests = RequestMetrics(aggregates)
    client = client_from_settings(
        settings,
        on_request=requests.request,
        on_invalid_item=requests.invalid_item,
        on_postponed=requests.postponed,
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
    collector = RunsCollector(
        web_config_ok=lambda: web is None or web.last_reload_ok,
        scope_verified=lambda: scope.verified,
        request_rate=client.pace.rate,
        endpoints_up=lambda: poller.endpoints.up(),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    status_page = StatusPage(endpoints_up=lambda: poller.endpoints.up())

    def publish(snapshot: Snapshot) -> None:
        collector.publish(snapshot)
        status_page.publish(snapshot)

    poller = Poller(
        client,
        tracker,
        checkpoint,
        poll_options(settings),
        publish=publish,
        first_start=loaded.fresh,
        spans_pending=lambda: shipper.pending_runs if shipper is not None else 0,
        agent_names=AgentNames(
            client,
            # A new agent is named within two cycles, at most every 30 s.
            unknown_refresh_s=min(UNKNOWN_REFRESH_S, 2 * settings.poll_interval),
        )
        if settings.agents_names
        else None,
        scope=scope,
        tracer=tracer,
        key_file=settings.api_key_file,
    )
    publish(poller.snapshot())
    host, port = settings.listen_host_port
    try:
        server = HttpServer(
            App(
                registry,
                lambda: poller.health,
                stale_after_s=max(300.0, 10 * settings.poll_interval),
                web=web,
                health_open=settings.web_health_open,
                status_page=status_page.render,
            ),
            host,
            port,
            web=web,
        )
    except OSError as exc:
        await client.aclose()
        raise setting_error("web_listen_address", _cannot_listen(host, port, exc)) from None
    server.start()
    log.info(
        "letta-exporter %s listening on %s://%s:%d, polling %s every %gs",
        __version__,
        "https" if server.tls else "http",
        host,
        server.port,
        settings.base_url,
        settings.poll_interval,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, stop, sig)
    shipping = asyncio.create_task(shipper.run(stop)) if shipper is not None else None
    try:
        await poller.run(stop)
    finally:
        if shipping is not None:
            stop.set()
            await shipping
        _close_sink(sink)
        server.stop()
        await client.aclose()
        checkpoint.close()
    log.info("stopped cleanly")
    return 0


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: another process is listening there"
    return f"cannot listen on {host}:{port} ({exc.strerror or exc})"


def _close_sink(sink: SpanSink | None) -> None:
    # Spans not exported yet stay in the outbox for the next start: nothing is lost.
    if sink is not None:
        sink.shutdown()


def _request_stop(stop: asyncio.Event, sig: Any) -> None:
    log.info("received %s: finishing the current cycle", signal.Signals(sig).name)
    stop.set()
