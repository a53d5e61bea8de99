"""A hostile or broken Letta server costs bounded time and memory, never the exporter.

Each case ends with a clear log line and a metric, and `/metrics` keeps answering while
it lasts: a body over the size cap, an endless body, a server that never answers, a list
that returns the same page whatever the cursor, and thousands of agents and models.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import load_fixture
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, running

pytestmark = pytest.mark.e2e

RSS_BOUND = 250 * 1024 * 1024  # several times an idle exporter (~55 MB), far below a leak


def scrape_time(exp: Exporter) -> float:
    started = time.monotonic()
    exp.metrics_text()
    return time.monotonic() - started


def finish(fake: FakeLetta, agent: str, **step: Any) -> str:
    run_id = fake.create_run(agent)
    fake.update_run(run_id, status="running")
    if step:
        fake.add_step(run_id, **step)
    fake.update_run(run_id, status="completed", stop_reason="end_turn")
    return run_id


@pytest.mark.parametrize(
    ("kind", "reason", "log_words"),
    [
        ("huge", "too_large", "cap"),
        ("endless", "too_large", "cap"),
        ("hang", "timeout", "poll failed (timeout)"),
    ],
)
def test_oversized_endless_or_silent_answers_are_bounded(
    kind: str, reason: str, log_words: str, tmp_path: Path
) -> None:
    with (
        FakeLetta() as fake,
        running(
            Exporter(
                fake.base_url,
                tmp_path / "s.sqlite",
                "--letta.max-response-bytes=1048576",
                "--letta.retries=1",
            )
        ) as exp,
    ):
        exp.wait_ready()
        finish(fake, "agent-a")
        exp.wait_for(lambda: exp.finished() == expected(fake.truth()))
        fake.inject(kind, times=3, path_regex=r"^/v1/runs/$", size=50_000_000)
        finish(fake, "agent-a")
        exp.wait_for(
            lambda: exp.value("letta_exporter_poll_errors_total", reason=reason) >= 1,
            timeout=60,
            what=f"a {reason} poll error",
        )
        assert exp.value("letta_up") == 0 or exp.value("letta_exporter_polls_total") > 0
        # /metrics keeps answering at once while Letta misbehaves.
        assert scrape_time(exp) < 2.0
        assert psutil.Process(exp.pid).memory_info().rss < RSS_BOUND
        assert any(log_words in line for line in exp.logs), "\n".join(exp.logs[-20:])
        # Once the faults are spent, the run that finished meanwhile is counted.
        exp.wait_for(lambda: exp.finished() == expected(fake.truth()), timeout=90)


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


@contextmanager
def same_page_server(runs: list[dict[str, Any]]) -> Iterator[str]:
    handler = type("Handler", (_SamePage,), {"page": json.dumps(runs).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_list_that_repeats_the_same_page_forever_ends_each_walk(tmp_path: Path) -> None:
    template = load_fixture("runs/stream_end_turn/run.json")
    now = time.time()
    runs = []
    for i in range(5):
        run = dict(template)
        run["id"] = f"run-00000000-0000-4000-8000-{i:012d}"
        run["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - i)) + "Z"
        runs.append(run)
    with (
        same_page_server(runs) as url,
        running(
            Exporter(
                url,
                tmp_path / "s.sqlite",
                "--letta.page-size=5",
                "--enrich.usage=false",
                "--enrich.steps=false",
                "--enrich.metrics=false",
                "--backfill=1h",
            )
        ) as exp,
    ):
        exp.wait_ready()
        exp.wait_for(
            lambda: (
                exp.value("letta_exporter_pagination_stalls_total")
                + exp.value("letta_exporter_cursor_lost_total")
                >= 3
            ),
            what="repeated pages to be noticed",
        )
        polls = exp.value("letta_exporter_polls_total")
        exp.wait_for(lambda: exp.value("letta_exporter_polls_total") > polls + 3)
        # Each run of the page counted once, however often the page came back.
        assert sum(exp.finished().values()) == 5
        assert scrape_time(exp) < 2.0
        assert any("no progress" in line or "cursor" in line for line in exp.logs)


def test_thousands_of_agents_and_models_stay_within_the_label_caps(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        running(
            Exporter(
                fake.base_url,
                tmp_path / "s.sqlite",
                "--agents.label-limit=20",
                "--models.label-limit=10",
            )
        ) as exp,
    ):
        exp.wait_ready()
        for i in range(1500):
            finish(fake, f"agent-{i:05d}", model=f"prov/model-{i:05d}", prompt_tokens=3)
        exp.wait_for(
            lambda: sum(exp.finished().values()) == 1500, timeout=180, what="1500 runs counted"
        )
        samples = exp.samples()
        agents = {dict(lb).get("agent") for n, lb in samples if n == "letta_runs_finished_total"}
        models = {dict(lb).get("model") for n, lb in samples if n == "letta_run_tokens_total"}
        assert len(agents) <= 21 and "__other__" in agents
        assert len(models) <= 11 and "__other__" in models
        assert exp.value("letta_exporter_label_overflow_total", label="agent") > 0
        assert exp.value("letta_exporter_label_overflow_total", label="model") > 0
        # Nothing lost to the caps: the overflow bucket holds the rest.
        assert sum(exp.finished().values()) == 1500
        assert exp.value("letta_run_tokens_total") == 1500 * 3
        assert psutil.Process(exp.pid).memory_info().rss < RSS_BOUND
