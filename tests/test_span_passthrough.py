"""Passthrough: Letta's own `/trace` rows as spans, minus message content.

Rows are hand-made from the reference (tests/fixtures/trace_rows/README.md).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from exporter.traces.passthrough import convert_trace_rows, ttft_seconds_from_rows
from exporter.traces.run_tracer import RunTracer
from exporter.traces.semconv import LETTA_TOOL_STATUS
from tests.span_inputs import RESOURCE, attrs, ctx, parent_id, rows


def test_passthrough_keeps_ids_parents_times_and_strings() -> None:
    data = rows("stream_two_steps.json")
    result = convert_trace_rows(data, RESOURCE)
    assert result.skipped == 0
    assert len(result.spans) == 6
    by_id = {f"{ctx(s)[1]:016x}": s for s in result.spans}
    for row in data:
        span = by_id[row["SpanId"]]
        assert f"{ctx(span)[0]:032x}" == row["TraceId"]
        assert span.name == row["SpanName"]
        assert span.end_time is not None and span.start_time is not None
        assert span.end_time - span.start_time == row["Duration"]
        expected_parent = int(row["ParentSpanId"], 16) if row["ParentSpanId"] else None
        assert parent_id(span) == expected_parent

    root = by_id["a1b2c3d4e5f60718"]
    assert root.parent is None
    assert root.kind is SpanKind.SERVER
    # "2026-11-23T12:00:44.360012" has no zone: UTC, to the microsecond.
    assert root.start_time == 1_795_435_244_360_012_000
    assert attrs(root)["http.status_code"] == "200"  # ClickHouse strings stay strings
    assert attrs(root)["http.agent_id"] == "agent-bbc99752-3923-4b0b-9def-de4d1d102cf0"
    assert root.resource.attributes["service.name"] == "letta-server"  # the row wins
    assert root.resource.attributes["letta.version"] == "0.16.8"
    assert root.resource.attributes["service.namespace"] == "agents"  # base kept
    assert root.instrumentation_scope is not None
    assert root.instrumentation_scope.name == "letta.otel.tracing"
    # One Resource object per distinct attribute set, so the encoder groups the spans.
    assert len({id(s.resource) for s in result.spans}) == 1


def test_passthrough_keeps_spans_whose_parent_was_filtered_out() -> None:
    spans = convert_trace_rows(rows("stream_two_steps.json"), RESOURCE).spans
    ids = {ctx(s)[1] for s in spans}
    orphans = [s for s in spans if s.parent is not None and s.parent.span_id not in ids]
    # Everything but the HTTP root: their parents (_step_checkpoint_start, method spans)
    # are not fetchable through /trace (§7.2), and they are not promoted to roots.
    assert len(orphans) == 5
    assert {s.name for s in orphans} == {
        "time_to_first_token",
        "agent_step",
        "LettaAgentV3._execute_tool",
    }
    ttft = next(s for s in orphans if s.name == "time_to_first_token")
    assert parent_id(ttft) == 0x0F1E2D3C4B5A6978
    assert ttft.parent is not None and ttft.parent.trace_id == ctx(ttft)[0]


def test_passthrough_events_and_content_dropping() -> None:
    result = convert_trace_rows(rows("stream_two_steps.json"), RESOURCE)
    spans = {(s.name, (s.start_time or 0)): s for s in result.spans}
    ttft = next(s for (name, _), s in spans.items() if name == "time_to_first_token")
    events = {e.name: e for e in ttft.events}
    assert events["time_to_first_token_ms"].attributes == {"ttft_ms": "412"}
    assert events["time_to_first_token_ms"].timestamp == 1_795_435_244_772_511_000
    assert events["letta_request_ms"].attributes == {"duration_ms": "1702"}
    step_span = next(s for (name, _), s in spans.items() if name == "agent_step")
    completed = next(e for e in step_span.events if e.name == "tool_execution_completed")
    assert dict(completed.attributes or {}) == {
        "tool_name": "conversation_search",
        "duration_ms": "406",
        "success": "False",
        "tool_type": "letta_core",
        "tool_id": "tool-0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9",
    }

    all_keys = {k for s in result.spans for k in attrs(s)}
    assert not [k for k in all_keys if k.startswith(("http.request.body.", "parameter."))]
    # 2 body attributes on the root, 4 parameters on each tool span, and the tool events'
    # arguments/results (2 + 2 on the failed call, 1 + 1 on the successful one).
    assert result.dropped_attributes == 2 + 4 + 4 + 4 + 2
    tools = sorted(
        (s for s in result.spans if s.name == "LettaAgentV3._execute_tool"),
        key=lambda s: s.start_time or 0,
    )
    failed, ok = tools
    # Letta says OK even though the tool failed: kept, but the failure is now queryable.
    assert failed.status.status_code is StatusCode.OK
    assert attrs(failed)[LETTA_TOOL_STATUS] == "error"
    assert attrs(ok)[LETTA_TOOL_STATUS] == "success"
    assert [(e.name, dict(e.attributes or {})) for e in failed.events] == [
        ("start_conversation_search_execution", {}),
        ("finish_conversation_search_execution", {"status": "error"}),
    ]
    dump = json.dumps(
        [[attrs(s), [dict(e.attributes or {}) for e in s.events]] for s in result.spans]
    )
    for secret in ("Alice", "Lisbon", "TimeoutError", "what did"):
        assert secret not in dump


def test_passthrough_of_the_json_typed_layout() -> None:
    result = convert_trace_rows(rows("json_typed.json"), RESOURCE)
    assert result.skipped == 0
    root, ttft = result.spans
    assert root.kind is SpanKind.SERVER
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "INTERNAL_SERVER_ERROR: OpenAI API error"
    assert root.start_time == 1_795_435_244_360_012_000
    assert root.end_time == root.start_time + 912_000_000  # a string Duration
    root_attrs = attrs(root)
    assert root_attrs["http.method"] == "POST"
    assert root_attrs["http.status_code"] == 500  # typed values stay typed
    assert root_attrs["retried"] is False
    assert root_attrs["tags"] == ("a", "b")
    assert "http.request.body.messages" not in root_attrs
    assert result.dropped_attributes == 1
    assert root.resource.attributes["service.name"] == "letta-server"
    context = root.get_span_context()
    assert context is not None and context.trace_state.get("congo") == "t61rcWkgMzE"
    (event,) = root.events
    assert (event.name, event.timestamp) == ("exception", 1_795_435_245_001_000_000)
    assert dict(event.attributes or {}) == {
        "exception.type": "LLMServerError",
        "exception.escaped": "False",
    }
    (link,) = root.links
    assert link.context.span_id == 0xA1B2C3D4E5F60718
    assert dict(link.attributes or {}) == {"letta.link": "previous_request"}

    assert ttft.kind is SpanKind.INTERNAL
    assert ttft.status.status_code is StatusCode.UNSET
    assert [e.name for e in ttft.events] == ["time_to_first_token_ms", "letta_request_ms"]
    assert attrs(ttft)["llm_config.context_window"] == 30000


def test_malformed_rows_are_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    data = rows("malformed.json")
    result = convert_trace_rows(data, RESOURCE)
    assert [s.name for s in result.spans] == ["agent_step"]
    assert result.skipped == len(data) - 1
    with caplog.at_level(logging.WARNING, logger="exporter.traces.run_tracer"):
        assert len(RunTracer(RESOURCE).from_rows("run-1", data).spans) == 1
    assert f"run-1: skipped {len(data) - 1} malformed /trace rows" in caplog.text
    # Garbage of every shape: never raises.
    junk: list[Any] = [None, 1, [], {"Events": 5}, {"SpanId": {}}, {"TraceId": None}]
    assert convert_trace_rows(junk, RESOURCE).skipped == len(junk)
    assert convert_trace_rows([], RESOURCE).spans == []


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-23T12:00:44.360012", 1_795_435_244_360_012_000),
        ("2026-11-23 12:00:44.360012", 1_795_435_244_360_012_000),
        ("2026-11-23T12:00:44.360012Z", 1_795_435_244_360_012_000),
        ("2026-11-23T14:00:44.360012+02:00", 1_795_435_244_360_012_000),
        ("2026-11-23T12:00:44.360012345", 1_795_435_244_360_012_345),
        ("2026-11-23T12:00:44", 1_795_435_244_000_000_000),
        ("1795435244360012000", 1_795_435_244_360_012_000),
    ],
)
def test_row_timestamps(timestamp: str, expected: int) -> None:
    row = {**rows("malformed.json")[0], "Timestamp": timestamp}
    (span,) = convert_trace_rows([row], RESOURCE).spans
    assert span.start_time == expected


def test_ttft_comes_only_from_the_event() -> None:
    assert ttft_seconds_from_rows(rows("stream_two_steps.json")) == pytest.approx(0.412)
    assert ttft_seconds_from_rows(rows("json_typed.json")) == pytest.approx(0.34)
    # The span without its event (a non-streaming request): its 1.7 s duration is not TTFT.
    without = [
        {**row, "Events.Timestamp": [], "Events.Name": [], "Events.Attributes": []}
        for row in rows("stream_two_steps.json")
    ]
    assert ttft_seconds_from_rows(without) is None
    assert ttft_seconds_from_rows([]) is None
    bad: list[Any] = [
        "x",
        {
            "SpanName": "time_to_first_token",
            "Events": [{"Name": "time_to_first_token_ms", "Attributes": {"ttft_ms": "soon"}}],
        },
        {
            "SpanName": "time_to_first_token",
            "Events": [{"Name": "time_to_first_token_ms", "Attributes": {"ttft_ms": "-3"}}],
        },
    ]
    assert ttft_seconds_from_rows(bad) is None
