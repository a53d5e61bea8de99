"""A golden /metrics file for a fixed scenario, and `promtool check metrics` on it.

UPDATE_GOLDEN=1 rewrites the file; review the diff like code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import catalogue as m
from exporter.aggregates import Aggregates
from exporter.collector import RunsCollector
from exporter.labels import CappedLabel
from exporter.letta.models import Run, to_epoch_ns
from exporter.snapshot import Health, Snapshot
from exporter.tracker import Tracker, TrackerOptions
from tests.conftest import load_fixture

GOLDEN = Path(__file__).parent / "golden" / "metrics.prom"
S = 1_000_000_000


def scenario_registry() -> CollectorRegistry:
    """The 29 captured runs counted, two captured in-flight runs open, fixed health."""
    aggregates = Aggregates()
    label = CappedLabel(
        "agent", 3, on_overflow=lambda name: aggregates.inc(m.LABEL_OVERFLOW, (name,))
    )
    tracker = Tracker(TrackerOptions(grace_ns=0), aggregates, label)
    runs = [Run.model_validate(r) for r in load_fixture("list/runs_order_desc.json")]
    now = max(to_epoch_ns(r.completed_at) for r in runs if r.completed_at) + 700 * S
    for run in runs:
        tracker.observe(run, now)
    for path in ("inflight/async_slow/run.json", "inflight/stream_slow/run.json"):
        run = Run.model_validate(load_fixture(path))
        tracker.observe(run, to_epoch_ns(run.created_at) + S, follow_old=True)
    tracker.finalize(now)
    aggregates.inc(m.POLLS, (), 12)
    aggregates.inc(m.POLL_ERRORS, ("http_5xx",), 1)
    aggregates.inc(m.API_REQUESTS, ("runs_list", "200"), 14)
    aggregates.inc(m.API_REQUESTS, ("runs_list", "503"), 3)
    aggregates.inc(m.INVALID_ITEMS, ("runs_list",), 1)
    for seconds in (0.004, 0.02, 0.3):
        aggregates.observe(m.API_REQUEST_DURATION, ("runs_list",), seconds)
    health = Health(
        up=True,
        ready=True,
        last_success_s=1795435400.0,
        last_attempt_s=1795435400.0,
        poll_duration_s=0.125,
    )
    opened = [to_epoch_ns(r.created_at) for r in runs]
    snapshot = Snapshot(
        aggregates=aggregates.copy(),
        open_runs=tuple(tracker.open_runs(max(opened) + 30 * S)),
        followed=tracker.followed_count(),
        health=health,
    )
    collector = RunsCollector()
    collector.publish(snapshot)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def test_metrics_exposition_matches_the_golden_file() -> None:
    text = generate_latest(scenario_registry()).decode()
    text = text.replace(f'version="{_version()}"', 'version="VERSION"')
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run with UPDATE_GOLDEN=1 and review the diff"


def test_every_catalogued_metric_is_in_the_golden_file() -> None:
    golden = GOLDEN.read_text()
    for spec in m.ALL:
        assert f"# TYPE {spec.exposed_name} {spec.kind.value}" in golden, spec.name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_finds_nothing_to_complain_about() -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=GOLDEN.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() + result.stderr.decode() == ""


def test_openmetrics_exposition_is_valid_too() -> None:
    text = generate_openmetrics(scenario_registry()).decode()
    assert text.endswith("# EOF\n")
    assert "letta_runs_finished_total{" in text


def _version() -> str:
    from exporter import __version__

    return __version__
