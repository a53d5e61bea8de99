"""Hostile or broken Letta servers, shared by tests/test_hostile.py and
tests/benchmarks/bench_hostile.py (which times the scrapes and weighs the exporter)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import load_fixture
from tests.fake_letta.fake import FakeLetta

# Faults on the runs list: (fake's fault kind, poll error reason, words of the log line).
LIST_FAULTS = [
    ("huge", "too_large", "poll failed (too_large)"),
    ("endless", "too_large", "poll failed (too_large)"),
    ("hang", "timeout", "poll failed (timeout)"),
]
# The exporter's flags for them: a 1 MiB response cap and one retry.
LIST_FAULT_FLAGS = ("--letta.max-response-bytes=1048576", "--letta.retries=1")
# Paging 5 at a time over a list that repeats its page, enrichment off.
SAME_PAGE_FLAGS = (
    "--letta.page-size=5",
    "--enrich.usage=false",
    "--enrich.steps=false",
    "--enrich.metrics=false",
    "--backfill=1h",
)
LABEL_CAP_FLAGS = ("--agents.label-limit=20", "--models.label-limit=10")


def finish(fake: FakeLetta, agent: str, **step: Any) -> str:
    """A run that went running → completed, with one step of `step` if given."""
    run_id = fake.create_run(agent)
    fake.update_run(run_id, status="running")
    if step:
        fake.add_step(run_id, **step)
    fake.update_run(run_id, status="completed", stop_reason="end_turn")
    return run_id


def finish_many_agents(fake: FakeLetta, count: int) -> None:
    """`count` runs, each of its own agent and model, 3 prompt tokens each."""
    for i in range(count):
        finish(fake, f"agent-{i:05d}", model=f"prov/model-{i:05d}", prompt_tokens=3)


class _SamePage(BaseHTTPRequestHandler):
    """Answers every runs-list request with the same page, whatever its cursor."""

    page: bytes = b"[]"

    def do_GET(self) -> None:
        body = self.page if self.path.startswith("/v1/runs/") else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def same_page_runs(count: int = 5) -> list[dict[str, Any]]:
    """`count` finished runs created a second apart, newest first, of a real run's shape."""
    template = load_fixture("runs/stream_end_turn/run.json")
    now = time.time()
    runs = []
    for i in range(count):
        run = dict(template)
        run["id"] = f"run-00000000-0000-4000-8000-{i:012d}"
        run["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - i)) + "Z"
        runs.append(run)
    return runs


@contextmanager
def same_page_server(runs: list[dict[str, Any]]) -> Iterator[str]:
    """A server whose runs list is always `runs`; yields its base URL."""
    handler = type("Handler", (_SamePage,), {"page": json.dumps(runs).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
