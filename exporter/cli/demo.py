"""`letta-exporter demo`: the exporter against a simulated Letta, with its state in a
temporary folder, so a newcomer sees metrics without any Letta server.

`--simulator-only` serves just the simulated Letta (the compose stack's `demo` profile
points an exporter at it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporter.cli.config import ConfigError, load_settings
from exporter.cli.logs import configure
from exporter.demo.server import SimulatedLetta

log = logging.getLogger("exporter")

# Shorter than the defaults, so runs show within seconds and the stuck run (40 minutes
# old at the start) counts as stale at once; any flag given on the command line wins.
DEMO_SETTINGS = {
    "poll_interval": "2s",
    "runs_grace_period": "2s",
    "runs_stale_after": "1m",
}


# Settings the demo decides itself: given on its command line they would be ignored.
_DEMO_OWNS = {"base_url": "--letta.url", "state_path": "--state.path"}


def build_parser() -> argparse.ArgumentParser:
    """The exporter's flags plus the simulator's own."""
    # Imported here: exporter.cli.main imports this module when it sees `demo`.
    from exporter.cli.main import build_parser as exporter_parser

    parser = exporter_parser()
    parser.prog = "letta-exporter demo"
    parser.description = (
        "The exporter against a simulated Letta 0.16.8 (named agents, live runs of every "
        "outcome, a stuck run, an approval left waiting), its state in a temporary file."
    )
    parser.add_argument(
        "--simulator.listen-address",
        dest="simulator_address",
        default="127.0.0.1:0",
        help="where the simulated Letta listens (default 127.0.0.1 on a free port)",
    )
    parser.add_argument(
        "--simulator-only",
        action="store_true",
        default=False,
        help="serve only the simulated Letta, for an exporter run elsewhere",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Run the demo until Ctrl-C (SIGINT) or SIGTERM; 0 when stopped so."""
    options = vars(build_parser().parse_args(argv))
    taken = [flag for field, flag in _DEMO_OWNS.items() if field in options]
    if taken:
        print(
            f"letta-exporter demo: {taken[0]} is the demo's own (the simulated Letta, a "
            "temporary state file); run `letta-exporter` to poll a real Letta",
            file=sys.stderr,
        )
        return 2
    host, _, port = options.pop("simulator_address").rpartition(":")
    simulator_only = options.pop("simulator_only")
    try:
        simulator = SimulatedLetta(host or "0.0.0.0", int(port))
    except (OSError, ValueError) as exc:
        print(f"letta-exporter demo: cannot listen for the simulator: {exc}", file=sys.stderr)
        return 2
    simulator.start()
    try:
        if simulator_only:
            return _serve_simulator(simulator)
        with tempfile.TemporaryDirectory(prefix="letta-exporter-demo-") as folder:
            return _serve_exporter(simulator, Path(folder), options)
    except KeyboardInterrupt:  # Ctrl-C before the exporter took over SIGINT
        return 0
    finally:
        simulator.stop()


def _serve_exporter(simulator: SimulatedLetta, folder: Path, options: dict[str, Any]) -> int:
    from exporter.cli.main import run_serve  # here, as in build_parser

    overrides: dict[str, Any] = {**DEMO_SETTINGS, **options}
    overrides["base_url"] = simulator.url
    overrides["state_path"] = folder / "letta-exporter.sqlite"
    try:
        settings = load_settings(overrides)
    except ConfigError as exc:
        print(f"letta-exporter demo: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    _, port = settings.listen_host_port
    where = (
        f"open http://localhost:{port}/ (metrics: /metrics)"
        if port
        else "its address is logged below"
    )
    log.info(
        "demo: a simulated Letta at %s, state in %s; %s; Ctrl-C stops",
        simulator.url,
        folder,
        where,
    )
    return run_serve(settings)


def _serve_simulator(simulator: SimulatedLetta) -> int:
    configure("info", "text")
    log.info("demo: a simulated Letta at %s; Ctrl-C stops", simulator.url)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    return 0
