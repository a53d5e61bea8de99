"""A golden /metrics file for a fixed scenario, and `promtool check metrics` on it.

UPDATE_GOLDEN=1 rewrites the file; review the diff like code.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.core.counting.pricing import ModelPrice, PriceTable
from exporter.core.labels import CappedLabel, free_value
from exporter.core.options import TrackerOptions
from exporter.core.tracker import Tracker
from exporter.core.views import approval_waits, open_runs
from exporter.letta.models import Run, RunMetrics, Step, Usage, to_epoch_ns
from exporter.metrics.collector import RunsCollector
from exporter.metrics.snapshot import Health, Readings, Snapshot
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from tests.conftest import FIXTURES, load_fixture
from tests.tools import require_tool

GOLDEN = Path(__file__).parent / "golden" / "metrics.prom"
S = 1_000_000_000


def scenario_registry() -> CollectorRegistry:
    """The 29 captured runs counted, two captured in-flight runs open, fixed health."""
    aggregates = Aggregates()
    label = CappedLabel(
        "agent", 3, on_overflow=lambda name: aggregates.inc(m.LABEL_OVERFLOW, (name,))
    )
    options = TrackerOptions(grace_ns=0, enrich=("usage", "steps", "metrics", "step_timings"))
    prices = PriceTable({"fake-llm": ModelPrice(input=0.15, output=0.6, cached_input=0.075)})
    tracker = Tracker(options, aggregates, label, prices=prices)
    runs = [Run.model_validate(r) for r in load_fixture("list/runs_order_desc.json")]
    now = max(to_epoch_ns(r.completed_at) for r in runs if r.completed_at) + 700 * S
    details = {load_fixture(f"runs/{d.name}/run.json")["id"]: d.name for d in scenario_dirs()}
    for run in runs:
        tracker.runs.observe(run, now)
        record = tracker.runs.records[run.id]
        scenario = details[run.id]
        tracker.enrichment.answered_usage(
            record, Usage.model_validate(load_fixture(f"runs/{scenario}/usage.json"))
        )
        steps = [Step.model_validate(s) for s in load_fixture(f"runs/{scenario}/steps.json")]
        tracker.enrichment.answered_steps(record, steps)
        # The capture has no step timings: give each step a fixed made-up duration.
        tracker.enrichment.answered_step_timings(
            record, [(free_value(s.model), 0.75) for s in steps]
        )
        metrics = load_fixture(f"runs/{scenario}/metrics.json")
        for tool_id in metrics.get("tools_used") or ():
            tracker.tool_names.name(tool_id, "conversation_search")
        tracker.enrichment.answered_metrics(record, RunMetrics.model_validate(metrics))
    for path in ("inflight/async_slow/run.json", "inflight/stream_slow/run.json"):
        run = Run.model_validate(load_fixture(path))
        tracker.runs.observe(run, to_epoch_ns(run.created_at) + S, follow_old=True)
    tracker.runs.finalize(now)
    aggregates.inc(m.POLLS, (), 12)
    aggregates.inc(m.POLL_ERRORS, ("http_5xx",), 1)
    aggregates.inc(m.API_REQUESTS, ("runs_list", "200"), 14)
    aggregates.inc(m.API_REQUESTS, ("runs_list", "503"), 3)
    aggregates.inc(m.INVALID_ITEMS, ("runs_list",), 1)
    for seconds in (0.004, 0.02, 0.3):
        aggregates.add(m.API_REQUEST_DURATION, ("runs_list",), seconds)
    health = Health(
        up=True,
        ready=True,
        last_success_s=1795435400.0,
        last_attempt_s=1795435400.0,
        poll_duration_s=0.125,
    )
    opened = [to_epoch_ns(r.created_at) for r in runs]
    # Two of the three labelled agents have a name (the third was deleted, say).
    names = {
        a["id"]: a["name"]
        for a in (load_fixture(f"agents/{n}.json") for n in ("alpha", "gamma_approval"))
    }
    snapshot = Snapshot(
        aggregates=aggregates.copy(),
        open_runs=tuple(open_runs(tracker.runs, tracker.labels.agent, max(opened) + 30 * S)),
        followed=tracker.runs.records.followed_count(),
        health=health,
        agent_info=tuple((a, names[a]) for a in label.values() if a in names),
        approval_waits=tuple(
            approval_waits(tracker.runs, tracker.labels.agent, now)
        ),  # the captured gamma agent's
        readings=Readings(scope_verified=True),  # as scoped to a project
    )
    collector = RunsCollector()
    collector.publish(snapshot)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def scenario_dirs() -> list[Path]:
    return sorted(p for p in (FIXTURES / "runs").iterdir() if (p / "run.json").exists())


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


def test_promtool_finds_nothing_to_complain_about() -> None:
    result = subprocess.run(
        [require_tool("promtool", "prometheus"), "check", "metrics"],
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
