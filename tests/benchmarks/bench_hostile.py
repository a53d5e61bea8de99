"""What a hostile Letta server costs: /metrics answer times and the exporter's memory.

    python -m tests.benchmarks.bench_hostile [--scrapes 20] [--agents 1500]

The cases of tests/test_hostile.py (which asserts only what happens, never how fast):
for each fault on the runs list (a body over the cap, an endless body, a server that
never answers), a list repeating one page, and thousands of agents and models, prints
the /metrics answer time (median and slowest of `--scrapes` scrapes while the fault
lasts) and the exporter's RSS. Then the same for a TLS listener held by three clients
that never handshake. Bounds they were once held to: a scrape under 2 s, RSS under
250 MB (several times an idle exporter's ~55 MB, far below a leak).
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import trustme
from prometheus_client import CollectorRegistry

from exporter.metrics.snapshot import Health
from exporter.web.config import load_web_config
from exporter.web.server import App, HttpServer
from exporter.web.watcher import WebConfigWatcher
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, exporter_on
from tests.hostile import (
    LABEL_CAP_FLAGS,
    LIST_FAULT_FLAGS,
    LIST_FAULTS,
    SAME_PAGE_FLAGS,
    finish,
    finish_many_agents,
    same_page_runs,
    same_page_server,
)


def scrape_seconds(url: str, scrapes: int, verify: ssl.SSLContext | bool = True) -> list[float]:
    """Seconds for each of `scrapes` GETs of `url`, one connection each (as Prometheus)."""
    times = []
    for _ in range(scrapes):
        started = time.monotonic()
        httpx.get(url, timeout=30, verify=verify).raise_for_status()
        times.append(time.monotonic() - started)
    return times


def row(case: str, times: list[float], rss: int | None) -> None:
    memory = f"{rss / 1e6:8.0f}" if rss is not None else "       -"
    print(f"{case:<28} {statistics.median(times) * 1000:10.1f} {max(times) * 1000:10.1f} {memory}")


def rss_of(exp: Exporter) -> int:
    return int(psutil.Process(exp.pid).memory_info().rss)


def list_fault(kind: str, reason: str, state: Path, scrapes: int) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, state, *LIST_FAULT_FLAGS) as exp:
        finish(fake, "agent-a")
        fake.inject(kind, times=3, path_regex=r"^/v1/runs/$", size=50_000_000)
        finish(fake, "agent-a")
        exp.wait_for(
            lambda: exp.value("letta_exporter_poll_errors_total", reason=reason) >= 1,
            timeout=60,
        )
        row(f"runs list: {kind}", scrape_seconds(exp.url + "/metrics", scrapes), rss_of(exp))


def same_page(state: Path, scrapes: int) -> None:
    with (
        same_page_server(same_page_runs(5)) as url,
        exporter_on(url, state, *SAME_PAGE_FLAGS) as exp,
    ):
        exp.wait_for(lambda: exp.value("letta_exporter_pagination_stalls_total") >= 3)
        row("runs list: same page", scrape_seconds(exp.url + "/metrics", scrapes), rss_of(exp))


def many_agents(state: Path, agents: int, scrapes: int) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, state, *LABEL_CAP_FLAGS) as exp:
        finish_many_agents(fake, agents)
        exp.wait_for(lambda: sum(exp.finished().values()) == agents, timeout=600)
        times = scrape_seconds(exp.url + "/metrics", scrapes)
        row(f"{agents} agents and models", times, rss_of(exp))


def silent_tls_clients(directory: Path, scrapes: int) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
    cert.private_key_pem.write_to_path(str(directory / "server.key"))
    config = directory / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    watcher = WebConfigWatcher(load_web_config(config))
    health = Health()
    health.mark_success(time.time())
    app = App(CollectorRegistry(), lambda: health, stale_after_s=300, web=watcher)
    server = HttpServer(app, "127.0.0.1", 0, web=watcher)
    server.start()
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        url = f"https://127.0.0.1:{server.port}/metrics"
        row("TLS, 3 silent clients", scrape_seconds(url, scrapes, context), None)
    finally:
        for sock in silent:
            sock.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--agents", type=int, default=1500)
    args = parser.parse_args()
    print(f"{'case':<28} {'median ms':>10} {'max ms':>10} {'RSS MB':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for kind, reason, _ in LIST_FAULTS:
            (root / kind).mkdir()
            list_fault(kind, reason, root / kind, args.scrapes)
        (root / "same").mkdir()
        same_page(root / "same", args.scrapes)
        (root / "agents").mkdir()
        many_agents(root / "agents", args.agents, args.scrapes)
        (root / "tls").mkdir()
        silent_tls_clients(root / "tls", args.scrapes)


if __name__ == "__main__":
    main()
