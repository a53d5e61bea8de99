"""Counting a finished run: samples, the trace it gets and the exemplar pointing at it."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource

from exporter.core.counting.counter import CountLabels, RunCounter
from exporter.core.counting.tool_names import ToolNames
from exporter.core.labels import CappedLabel
from exporter.core.options import TrackerOptions
from exporter.core.runs.record import Enrichment, Phase, RunRecord
from exporter.core.runs.run_info import FetchedTrace, RunInfo
from exporter.core.tracker import Tracker
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.rows import (
    enrichment_from_json,
    enrichment_to_json,
    record_from_row,
    record_to_row,
)
from exporter.traces.run_tracer import RunTracer
from tests.run_factory import S, at, make_run


def tracing_tracker(**options: Any) -> Tracker:
    aggregates = Aggregates()
    return Tracker(
        TrackerOptions(grace_ns=0, trace_delay_ns=20 * S, **options),
        aggregates,
        CappedLabel("agent", 100),
        build_trace=RunTracer(Resource({"service.name": "t"})).build,
    )


def test_with_tracing_a_run_waits_for_its_trace_and_takes_ttft_from_its_event() -> None:
    tracker = tracing_tracker()
    run = make_run(1, created=0, total_duration_ns=2 * S)
    tracker.runs.observe(run, at(30))  # completed at 2s: settled (old enough) at once
    record = tracker.runs.records[run.id]
    assert record.phase is Phase.ENRICHING and record.enrich is not None
    assert record.enrich.pending == ["trace"]
    assert tracker.enrichment.trace_ready_ns(record) == at(22)
    fetched = FetchedTrace([{"name": "x"}], "ab" * 16, 412_000_000, 0)
    # The pending trace survives the state file (a restart does not refetch blindly).
    saved = record_from_row(run.id, record.created_ns, record_to_row(record))
    assert saved.enrich == record.enrich
    assert enrichment_from_json(enrichment_to_json(record.enrich)) == record.enrich
    tracker.enrichment.answered_trace(record, fetched)
    assert record.phase is Phase.DONE
    ttft = tracker.aggregates.histograms[m.RUN_TTFT.name][("agent-a",)]
    assert (ttft.count, ttft.sum) == (1, 0.412)
    duration = tracker.aggregates.histograms[m.RUN_DURATION.name][("agent-a", "completed")]
    assert duration.exemplars is not None
    assert ("ab" * 16, 2.0) in duration.exemplars
    assert tracker.counter.take_changes() == [(run.id, [{"name": "x"}])]


def test_without_trace_rows_the_built_root_lasts_the_duration_sample() -> None:
    tracker = tracing_tracker()
    run = make_run(2, created=0, total_duration_ns=1_234_567_891)
    tracker.runs.observe(run, at(30))
    record = tracker.runs.records[run.id]
    tracker.enrichment.answered_trace(record, None)
    [(run_id, spans)] = tracker.counter.take_changes()
    root = spans[0]
    assert run_id == run.id and root["name"].startswith("invoke_agent")
    assert root["end"] - root["start"] == 1_234_567_891
    hist = tracker.aggregates.histograms[m.RUN_DURATION.name][("agent-a", "completed")]
    assert hist.exemplars is not None and (root["trace_id"], 1.234567891) in hist.exemplars


def test_the_counter_hands_the_builder_a_plain_run_info_and_uses_its_trace_id() -> None:
    built: list[RunInfo] = []

    def build(info: RunInfo) -> tuple[list[dict[str, Any]], str]:
        built.append(info)
        return [{"name": "root"}], "cd" * 16

    aggregates = Aggregates()
    counter = RunCounter(
        aggregates,
        CountLabels(CappedLabel("agent", 10)),
        ToolNames({"tool-1": "send_message"}),
        build_trace=build,
    )
    record = RunRecord(
        id="run-1",
        agent_id="agent-a",
        created_ns=0,
        phase=Phase.ENRICHING,
        status="completed",
        stop_reason="end_turn",
        duration_ns=3 * S,
        enrich=Enrichment(pending=[], tool_ids=["tool-1", "tool-2"]),
    )
    counter.count(record)
    [info] = built
    assert (info.run_id, info.end_ns, info.tool_names) == (
        "run-1",
        3 * S,
        ("send_message", "tool-2"),
    )
    assert counter.take_changes() == [("run-1", [{"name": "root"}])]
    hist = aggregates.histograms[m.RUN_DURATION.name][("agent-a", "completed")]
    assert hist.exemplars is not None and ("cd" * 16, 3.0) in hist.exemplars
