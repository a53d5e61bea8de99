"""Enrichment rules in the tracker: details fetched once, counted once, failures bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli.prices import PriceFileError, load_prices
from exporter.core.counting.pricing import ModelPrice, PriceTable
from exporter.core.labels import CappedLabel
from exporter.core.options import TrackerOptions
from exporter.core.runs.record import Phase, RunRecord
from exporter.core.tracker import Tracker
from exporter.letta.models import RunMetrics, Step, Usage
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.rows import record_from_row, record_to_row
from tests.run_factory import S, at, make_run

ALL = ("usage", "steps", "metrics")


def make_tracker(enrich: tuple[str, ...] = ALL, **options: object) -> Tracker:
    aggregates = Aggregates()
    return Tracker(
        TrackerOptions(grace_ns=0, enrich=enrich, **options),  # type: ignore[arg-type]
        aggregates,
        CappedLabel("agent", 10),
        prices=PriceTable({"gpt-x": ModelPrice(input=1.0, output=2.0, cached_input=0.5)}),
        tool_names={"tool-1": "send_message"},
    )


def step(n: int, model: str = "gpt-x", **tokens: int) -> Step:
    return Step.model_validate({"id": f"step-{n}", "model": model, **tokens})


def series(tracker: Tracker, spec: m.MetricSpec) -> dict[tuple[str, ...], float]:
    return dict(tracker.aggregates.series(spec))


def finished_run(tracker: Tracker) -> RunRecord:
    tracker.runs.observe(make_run(1), at(1))
    record = tracker.runs.records[make_run(1).id]
    assert record.phase is Phase.ENRICHING
    return record


def test_a_finished_run_is_counted_with_its_details_once_all_are_fetched() -> None:
    tracker = make_tracker()
    record = finished_run(tracker)
    tracker.enrichment.answered_usage(record, Usage(prompt_tokens=300, completion_tokens=30))
    steps = [
        step(1, prompt_tokens=100, completion_tokens=10, cached_input_tokens=40),
        step(2, prompt_tokens=200, completion_tokens=20, reasoning_tokens=5),
    ]
    tracker.enrichment.answered_steps(record, steps)
    assert series(tracker, m.RUNS_FINISHED) == {}, "not counted before every detail is in"
    tracker.enrichment.answered_metrics(
        record, RunMetrics(id=record.id, num_steps=2, tools_used=["tool-1", "tool-9"])
    )
    assert series(tracker, m.RUNS_FINISHED) == {("agent-a", "completed", "end_turn"): 1.0}
    assert series(tracker, m.RUN_TOKENS) == {
        ("agent-a", "gpt-x", "input"): 300.0,
        ("agent-a", "gpt-x", "output"): 30.0,
        ("agent-a", "gpt-x", "cached_input"): 40.0,
        ("agent-a", "gpt-x", "reasoning"): 5.0,
    }
    assert series(tracker, m.RUN_TOOL_CALLS) == {
        ("agent-a", "send_message"): 1.0,
        ("agent-a", "tool-9"): 1.0,  # an unresolved id is its own label
    }
    # (300 - 40) × $1 + 40 × $0.5 + 30 × $2, per million tokens.
    assert series(tracker, m.RUN_COST) == {("agent-a", "gpt-x"): pytest.approx(340e-6)}
    hist = tracker.aggregates.histograms[m.RUN_STEPS.name][("agent-a",)]
    assert (hist.count, hist.sum) == (1, 2)
    assert tracker.runs.records[record.id].phase is Phase.DONE
    assert tracker.runs.records[record.id].enrich is None


def test_a_late_success_after_counting_changes_nothing() -> None:
    tracker = make_tracker(enrich=("usage",))
    record = finished_run(tracker)
    tracker.enrichment.answered_usage(record, Usage(prompt_tokens=5, completion_tokens=1))
    tracker.runs.observe(make_run(1), at(3))
    tracker.runs.finalize(at(3))
    assert sum(series(tracker, m.RUNS_FINISHED).values()) == 1
    assert series(tracker, m.RUN_TOKENS) == {
        ("agent-a", "unknown", "input"): 5.0,
        ("agent-a", "unknown", "output"): 1.0,
    }


def test_transient_failures_back_off_then_give_up_and_count_without_the_detail() -> None:
    tracker = make_tracker(enrich=("usage", "steps"), enrich_max_attempts=3)
    record = finished_run(tracker)
    tracker.enrichment.answered_usage(record, Usage(prompt_tokens=7, completion_tokens=3))
    tracker.enrichment.failed(record, "steps", at(1), permanent=False)
    assert record.enrich is not None and record.enrich.next_try_ns == at(3)
    assert tracker.enrichment.due(at(2), 10) == []
    assert tracker.enrichment.due(at(3), 10) == [record]
    tracker.enrichment.failed(record, "steps", at(3), permanent=False)
    assert record.enrich.next_try_ns == at(7)  # doubled
    tracker.enrichment.failed(record, "steps", at(7), permanent=False)
    assert series(tracker, m.ENRICHMENT_FAILURES) == {("steps",): 1.0}
    assert series(tracker, m.RUNS_FINISHED) == {("agent-a", "completed", "end_turn"): 1.0}
    # Without steps the tokens come from /usage, under model "unknown".
    assert series(tracker, m.RUN_TOKENS)[("agent-a", "unknown", "input")] == 7.0


def test_a_404_gives_the_endpoint_up_at_once() -> None:
    tracker = make_tracker(enrich=("metrics",))
    record = finished_run(tracker)
    tracker.enrichment.failed(record, "metrics", at(2), permanent=True)
    assert series(tracker, m.ENRICHMENT_FAILURES) == {("metrics",): 1.0}
    assert sum(series(tracker, m.RUNS_FINISHED).values()) == 1
    assert series(tracker, m.RUN_TOOL_CALLS) == {}


def test_step_timings_are_given_up_with_the_steps_they_depend_on() -> None:
    tracker = make_tracker(enrich=("steps", "step_timings"), enrich_max_attempts=1)
    record = finished_run(tracker)
    tracker.enrichment.failed(record, "steps", at(2), permanent=False)
    assert series(tracker, m.ENRICHMENT_FAILURES) == {("steps",): 1.0, ("step_timings",): 1.0}
    assert sum(series(tracker, m.RUNS_FINISHED).values()) == 1


def test_steps_without_timings_use_num_steps_from_metrics() -> None:
    tracker = make_tracker(enrich=("metrics",))
    record = finished_run(tracker)
    tracker.enrichment.answered_metrics(record, RunMetrics(id=record.id, num_steps=50))
    hist = tracker.aggregates.histograms[m.RUN_STEPS.name][("agent-a",)]
    assert hist.sum == 50


def test_pending_enrichment_survives_the_checkpoint_row() -> None:
    tracker = make_tracker()
    record = finished_run(tracker)
    tracker.enrichment.answered_steps(record, [step(1, prompt_tokens=3)])
    again = record_from_row(record.id, record.created_ns, record_to_row(record))
    assert again.enrich == record.enrich
    assert again.phase is Phase.ENRICHING


def test_model_labels_are_capped() -> None:
    aggregates = Aggregates()
    tracker = Tracker(
        TrackerOptions(grace_ns=0, enrich=("steps",)),
        aggregates,
        CappedLabel("agent", 10),
        model_label=CappedLabel("model", 1),
    )
    record = finished_run(tracker)
    tracker.enrichment.answered_steps(
        record, [step(1, "m-1", prompt_tokens=1), step(2, "m-2", prompt_tokens=1)]
    )
    models = {labels[1] for labels in series(tracker, m.RUN_TOKENS)}
    assert models == {"m-1", "__other__"}


def test_price_files_in_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "prices.toml"
    toml.write_text('[models."gpt-x"]\ninput = 1.0\noutput = 2.0\n')
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text("models:\n  gpt-x: {input: 1.0, output: 2.0}\n")
    for path in (toml, yaml_file):
        table = load_prices(path)
        assert table.cost("gpt-x", {"input": 1_000_000, "output": 1_000_000}) == 3.0
        assert table.cost("other", {"input": 1}) is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.toml", '[models."gpt-x"]\ninput = 1.0\noutput = = 2\n', "line 3"),
        ("p.yaml", "models:\n  gpt-x: {input: 1.0, output: [\n", "line"),
        (
            "p.yaml",
            "models:\n  a: {input: 1, output: 1}\n  gpt-x: {input: -1, output: 2}\n",
            "line 3",
        ),
        ("p.toml", '[models."gpt-x"]\ninput = 1.0\n', "line 1: model 'gpt-x', output"),
    ],
)
def test_a_malformed_price_file_names_the_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PriceFileError, match=message):
        load_prices(path)


def test_backoff_is_capped_at_five_minutes() -> None:
    tracker = make_tracker(enrich=("usage",), enrich_max_attempts=50, enrich_backoff_ns=60 * S)
    record = finished_run(tracker)
    for attempt in range(10):
        tracker.enrichment.failed(record, "usage", at(attempt), permanent=False)
    assert record.enrich is not None and record.enrich.next_try_ns == at(9) + 300 * S


def test_step_tokens_reconcile_with_usage_on_every_captured_run() -> None:
    from tests.conftest import FIXTURES, load_fixture

    checked = 0
    for run_dir in sorted((FIXTURES / "runs").iterdir()):
        if not (run_dir / "usage.json").exists():
            continue
        usage = Usage.model_validate(load_fixture(f"runs/{run_dir.name}/usage.json"))
        steps = [Step.model_validate(s) for s in load_fixture(f"runs/{run_dir.name}/steps.json")]
        tracker = make_tracker(enrich=("steps",))
        record = finished_run(tracker)
        tracker.enrichment.answered_steps(record, steps)
        tokens = series(tracker, m.RUN_TOKENS)
        assert sum(v for k, v in tokens.items() if k[2] == "input") == usage.prompt_tokens
        assert sum(v for k, v in tokens.items() if k[2] == "output") == usage.completion_tokens
        checked += 1
    assert checked >= 20
