"""What a scrape shows comes from the published snapshot only; the readings that change
between cycles (request rate, endpoints served, scope, web config reload) are put in
when a cycle publishes and again when they change."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from exporter.cli.publisher import Publisher
from exporter.metrics.collector import RunsCollector
from exporter.metrics.snapshot import Health, Readings, Snapshot
from exporter.web.config import load_web_config
from exporter.web.server import App
from exporter.web.status import StatusPage
from exporter.web.watcher import WebConfigWatcher


class Parts:
    """Stands for the client's pace, the enricher and the scope check: readings that
    change when the test says, and a count of how often they were read."""

    def __init__(self) -> None:
        self.readings = Readings()
        self.reads = 0

    def read(self) -> Readings:
        self.reads += 1
        return self.readings


def published(parts: Parts) -> tuple[Publisher, CollectorRegistry, StatusPage]:
    collector = RunsCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    status_page = StatusPage()
    publisher = Publisher(collector, status_page)
    publisher.read_from(parts.read)
    publisher.cycle(Snapshot())
    return publisher, registry, status_page


def gauge(registry: CollectorRegistry, name: str) -> str | None:
    match = re.search(rf"^{name}(\{{.*\}})? (\S+)$", generate_latest(registry).decode(), re.M)
    return match.group(2) if match else None


def test_a_scrape_and_the_status_page_read_nothing_but_the_snapshot() -> None:
    parts = Parts()
    parts.readings = Readings(request_rate=12.5, endpoints_up=(("steps", False),))
    _, registry, status_page = published(parts)
    reads = parts.reads
    for _ in range(3):
        assert gauge(registry, "letta_exporter_request_rate_limit") == "12.5"
        assert gauge(registry, "letta_exporter_endpoint_up") == "0.0"
        assert b'data-metric="letta_exporter_endpoint_up{endpoint=&quot;steps&quot;}"' in (
            status_page.render()
        )
    assert parts.reads == reads


def test_a_changed_reading_is_shown_before_the_next_cycle() -> None:
    parts = Parts()
    publisher, registry, status_page = published(parts)
    assert gauge(registry, "letta_exporter_request_rate_limit") is None
    assert gauge(registry, "letta_exporter_scope_verified") is None
    parts.readings = Readings(request_rate=3.0, scope_verified=True, endpoints_up=(("x", True),))
    publisher.refresh()
    assert gauge(registry, "letta_exporter_request_rate_limit") == "3.0"
    assert gauge(registry, "letta_exporter_scope_verified") == "1.0"
    assert b"letta_exporter_endpoint_up{endpoint=&quot;x&quot;}" in status_page.render()


def test_a_refresh_keeps_the_last_cycles_counts_and_health() -> None:
    parts = Parts()
    publisher, registry, _ = published(parts)
    health = Health()
    health.mark_success(1_800_000_000.0)
    publisher.cycle(Snapshot(health=health, followed=7))
    parts.readings = Readings(request_rate=2.0)
    publisher.refresh()
    assert gauge(registry, "letta_exporter_open_runs") == "7.0"
    assert gauge(registry, "letta_up") == "1.0"
    assert publisher.health().last_success_s == 1_800_000_000.0


def test_a_failed_web_config_reload_shows_in_the_scrape_that_found_it(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("{}\n")
    collector = RunsCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    publisher = Publisher(collector, StatusPage())
    watcher = WebConfigWatcher(load_web_config(path), check_every_s=0, on_reload=publisher.refresh)
    publisher.read_from(lambda: Readings(web_config_ok=watcher.last_reload_ok))
    publisher.cycle(Snapshot())
    app = App(registry, publisher.health, stale_after_s=300, web=watcher)

    def scrape() -> str:
        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            assert status == "200 OK"

        environ = {"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "QUERY_STRING": ""}
        return b"".join(app(environ, start_response)).decode()

    metric = "letta_exporter_web_config_last_reload_successful"
    assert f"\n{metric} 1.0\n" in scrape()
    path.write_text("basic_auth_users: [\n")  # not YAML
    assert f"\n{metric} 0.0\n" in scrape()
    path.write_text("{}\n")
    assert f"\n{metric} 1.0\n" in scrape()
