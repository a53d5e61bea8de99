"""Command line: flags, signals and exit codes; the parts are wired in `wiring`.

Exit codes: 0 after SIGTERM/SIGINT, 1 when the state file's content cannot be used, 2 for
an invalid setting or one that fails at start-up (port in use, state directory not
writable, state file held by another exporter), always as one sentence naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

from exporter import __version__
from exporter.cli import check
from exporter.cli.config import FLAGS, ConfigError, Settings, load_settings, shown_default
from exporter.cli.logs import configure
from exporter.cli.prices import PriceFileError
from exporter.cli.wiring import build_exporter
from exporter.store.checkpoint import CheckpointError
from exporter.web.errors import WebConfigError

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
    exporter = build_exporter(settings, os.environ)
    try:
        server = exporter.listen()
        server.start()
        log.info(
            "letta-exporter %s listening on %s://%s:%d, polling %s every %gs",
            __version__,
            "https" if server.tls else "http",
            settings.listen_host_port[0],
            server.port,
            settings.display_url,
            settings.poll_interval,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _request_stop, stop, sig)
        try:
            await exporter.run(stop)
        finally:
            server.stop()
    finally:
        await exporter.close()
    log.info("stopped cleanly")
    return 0


def _request_stop(stop: asyncio.Event, sig: Any) -> None:
    log.info("received %s: finishing the current cycle", signal.Signals(sig).name)
    stop.set()
