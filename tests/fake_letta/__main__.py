"""CLI: ``python -m tests.fake_letta --port 0 --bulk 1000000``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence

from tests.fake_letta.fake import FakeLetta


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a fake Letta in this process until SIGTERM/SIGINT.

    Prints ``READY http://127.0.0.1:PORT`` on stdout once the socket accepts requests.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.fake_letta", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bulk", type=int, default=0, help="number of terminal runs to preload")
    parser.add_argument("--agents", type=int, default=10, help="agents the bulk runs belong to")
    parser.add_argument("--spacing-s", type=float, default=0.01, help="created_at spacing")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--semantics",
        choices=("letta-0.16.8", "conventional", "relative"),
        default="letta-0.16.8",
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--unknown-cursor", choices=("404", "ignore"), default=None, help="see FakeLetta"
    )
    parser.add_argument("--password", default=None, help="enable secure mode (§1.2)")
    args = parser.parse_args(argv)

    fake = FakeLetta(
        semantics=args.semantics,
        backend=args.backend,
        unknown_cursor=args.unknown_cursor,
        password=args.password,
        host=args.host,
        port=args.port,
    )
    if args.bulk:
        started = time.perf_counter()
        fake.bulk_load(args.bulk, agents=args.agents, spacing_s=args.spacing_s, seed=args.seed)
        elapsed = time.perf_counter() - started
        print(f"loaded {args.bulk} runs in {elapsed:.2f} s", file=sys.stderr, flush=True)

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    fake.start()
    print(f"READY {fake.base_url}", flush=True)
    try:
        while not stop.wait(0.2):  # short waits so the signal handler gets to run
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
