"""Runs as spans: built traces, passthrough of Letta's own rows, and the OTLP sink.

Built spans come from the real 0.16.8 fixtures (run.json, steps.json, metrics.json);
passthrough rows are hand-made from the reference (tests/fixtures/trace_rows/README.md).
The end-to-end tests send through the real OTLP/HTTP exporter to tests/otlp_receiver.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from exporter import __version__
from exporter.traces.sink import (
    DROPPED,
    EXPORTED,
    FAILED,
    SpanSink,
    exporter_from_environment,
    resource_from_environment,
    sink_from_environment,
)
from exporter.traces.spans import (
    LETTA_TIMING,
    LETTA_TOOL_STATUS,
    SCHEMA_URL,
    build_run_spans,
    convert_trace_rows,
    span_id_for,
    spans_from_trace_rows,
    trace_id_for,
    ttft_seconds_from_rows,
)
from tests.conftest import load_fixture
from tests.otlp_receiver import OtlpReceiver
from tests.span_inputs import MS, T0, rich_run, rows, run_info, step

RESOURCE = Resource({"service.name": "letta-exporter", "service.namespace": "agents"})


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Every receiver, exporter and worker thread a test starts is gone when it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left behind: {extra}")


def ctx(span: ReadableSpan) -> tuple[int, int]:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id, context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --------------------------------------------------------------------------- built spans


def test_built_trace_shape_from_a_real_run() -> None:
    # completed + llm_api_error after a failed first step: the status/reason disagreement
    # of letta-runs-api.md §5.2, captured from a real server.
    run = run_info("stream_fail_after_2", agent_name="alpha")
    spans = build_run_spans(run, RESOURCE)
    root, *children = spans

    assert root.name == "invoke_agent alpha"
    assert root.kind is SpanKind.INTERNAL
    assert root.parent is None
    assert root.start_time == run.created_ns
    assert root.end_time == run.end_ns
    metrics = load_fixture("runs/stream_fail_after_2/metrics.json")
    assert root.end_time - root.start_time == metrics["run_ns"]  # == the histogram sample
    assert root.resource is RESOURCE
    assert root.instrumentation_scope is not None
    assert root.instrumentation_scope.schema_url == SCHEMA_URL
    assert root.instrumentation_scope.version == __version__

    assert [c.name for c in children] == ["chat fake-llm"] * 3
    trace_id, root_id = ctx(root)
    for child in children:
        assert ctx(child)[0] == trace_id
        assert parent_id(child) == root_id
        assert child.kind is SpanKind.CLIENT
        assert attrs(child)[LETTA_TIMING] == "estimated"
    # Estimated steps tile the run: inside it, back to back, in order.
    assert children[0].start_time == root.start_time
    assert children[-1].end_time == root.end_time
    for a, b in zip(children, children[1:], strict=False):
        assert a.end_time == b.start_time
        assert a.start_time is not None and a.end_time is not None
        assert a.start_time <= a.end_time


def test_built_attributes_and_error_of_a_completed_run_with_an_error_stop_reason() -> None:
    run = run_info("stream_fail_after_2")
    root, first, second, third = build_run_spans(run, RESOURCE)
    root_attrs = attrs(root)
    assert root.name == f"invoke_agent {run.agent_id}"  # no name known: the id
    assert root_attrs["gen_ai.operation.name"] == "invoke_agent"
    assert root_attrs["gen_ai.provider.name"] == "letta"
    assert root_attrs["gen_ai.agent.id"] == run.agent_id
    assert "gen_ai.agent.name" not in root_attrs
    assert root_attrs["gen_ai.request.model"] == "fake-llm"  # one model in the run
    assert root_attrs["letta.run.id"] == run.run_id
    assert root_attrs["letta.run.status"] == "completed"  # the server's word, kept
    assert root_attrs["letta.run.stop_reason"] == "llm_api_error"
    assert root_attrs["letta.run.background"] is False
    assert root_attrs["letta.run.type"] == "send_message_streaming"
    assert root_attrs["letta.run.step_count"] == 3
    # Letta maps llm_api_error to failed: the span says ERROR whatever the status says.
    assert root.status.status_code is StatusCode.ERROR
    # The failed step's class, as letta_runs_failed_total names it.
    assert root_attrs["error.type"] == "llm_server_error"
    assert not any(k.startswith("gen_ai.usage.") for k in root_attrs)  # on steps only

    first_attrs = attrs(first)
    assert first_attrs["gen_ai.operation.name"] == "chat"
    assert first_attrs["gen_ai.provider.name"] == "openai"
    assert first_attrs["gen_ai.request.model"] == "fake-llm"
    assert first_attrs["gen_ai.usage.input_tokens"] == 0  # it failed before any usage
    assert first_attrs["letta.step.model_handle"] == "openai-proxy/fake-llm"
    assert first.status.status_code is StatusCode.ERROR
    assert first_attrs["error.type"] == "llm_server_error"
    second_attrs = attrs(second)
    assert second_attrs["gen_ai.usage.input_tokens"] == 2386
    assert second.status.status_code is StatusCode.UNSET
    assert "error.type" not in second_attrs
    assert attrs(third)["letta.step.index"] == 2


def test_failed_run_is_an_error_with_the_most_specific_type() -> None:
    # The failed step's class first: the same LLM failure has one name on every API path.
    for scenario in ("async_llm_500", "sync_llm_500", "stream_llm_500"):
        (root, *_) = build_run_spans(run_info(scenario), RESOURCE)
        assert root.status.status_code is StatusCode.ERROR
        assert attrs(root)["error.type"] == "llm_server_error", scenario
    (root, *_) = build_run_spans(run_info("stream_llm_429"), RESOURCE)
    assert attrs(root)["error.type"] == "llm_rate_limit_error"
    assert root.status.description == "llm_rate_limit_error"
    # Without steps: metadata.error's object type, or the code leading a string error
    # (never its free text).
    (root,) = build_run_spans(run_info("stream_llm_429", steps=()), RESOURCE)
    assert attrs(root)["error.type"] == "llm_rate_limit"
    (root,) = build_run_spans(run_info("async_llm_500", steps=()), RESOURCE)
    assert attrs(root)["error.type"] == "internal_server_error"
    (root,) = build_run_spans(
        rich_run(status="failed", stop_reason=None, steps=(), tool_names=()), RESOURCE
    )
    assert attrs(root)["error.type"] == "_OTHER"


@pytest.mark.parametrize("scenario", ["stream_end_turn", "stream_cancelled", "sync_max_steps"])
def test_successful_and_cancelled_runs_are_not_errors(scenario: str) -> None:
    for span in build_run_spans(run_info(scenario), RESOURCE):
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in attrs(span)


def test_rich_run_usage_providers_and_tools() -> None:
    run = rich_run(
        steps=(
            step(1, cached_input_tokens=800, cache_write_tokens=120),
            step(2, reasoning_tokens=33, provider_name="google_ai", model="gemini-2.5-pro"),
        )
    )
    root, s1, s2, t1, t2 = build_run_spans(run, RESOURCE)
    root_attrs = attrs(root)
    assert root.name == "invoke_agent support-bot"
    assert root_attrs["gen_ai.agent.name"] == "support-bot"
    assert root_attrs["gen_ai.conversation.id"] == "conv-123"
    assert "gen_ai.request.model" not in root_attrs  # two models: not single-model
    assert attrs(s1)["gen_ai.usage.cache_read.input_tokens"] == 800
    assert attrs(s1)["gen_ai.usage.cache_creation.input_tokens"] == 120
    assert "gen_ai.usage.reasoning.output_tokens" not in attrs(s1)
    assert attrs(s2)["gen_ai.usage.reasoning.output_tokens"] == 33
    assert attrs(s2)["gen_ai.provider.name"] == "gcp.gemini"  # the well-known value
    assert s2.name == "chat gemini-2.5-pro"
    assert attrs(s1)["gen_ai.conversation.id"] == "conv-123"

    assert [t1.name, t2.name] == ["execute_tool conversation_search", "execute_tool send_message"]
    for tool, name in ((t1, "conversation_search"), (t2, "send_message")):
        assert tool.kind is SpanKind.INTERNAL
        assert parent_id(tool) == ctx(root)[1]
        assert attrs(tool)["gen_ai.operation.name"] == "execute_tool"
        assert attrs(tool)["gen_ai.tool.name"] == name
        assert attrs(tool)[LETTA_TIMING] == "estimated"
        assert root.start_time is not None and root.end_time is not None
        assert tool.start_time is not None and tool.end_time is not None
        assert root.start_time <= tool.start_time <= tool.end_time <= root.end_time


def test_measured_step_timings_are_used_and_clamped_into_the_run() -> None:
    run = rich_run(
        steps=(
            step(1, start_ns=T0 + 100 * MS, duration_ns=900 * MS),
            step(2, start_ns=T0 + 2_500 * MS, duration_ns=5_000 * MS),  # clock skew: too long
            step(3),  # no timings: estimated
        ),
        tool_names=(),
    )
    _, s1, s2, s3 = build_run_spans(run, RESOURCE)
    assert (s1.start_time, s1.end_time) == (T0 + 100 * MS, T0 + 1_000 * MS)
    assert attrs(s1)[LETTA_TIMING] == "measured"
    assert (s2.start_time, s2.end_time) == (T0 + 2_500 * MS, run.end_ns)
    assert attrs(s3)[LETTA_TIMING] == "estimated"


def test_end_before_start_gives_an_empty_span_not_a_negative_one() -> None:
    (root,) = build_run_spans(rich_run(end_ns=T0 - 5, steps=(), tool_names=()), RESOURCE)
    assert root.start_time == root.end_time == T0


def test_no_message_content_in_built_spans() -> None:
    for scenario in ("stream_fail_after_2", "sync_multi_step", "stream_bad_tool"):
        messages = load_fixture(f"runs/{scenario}/messages.json")
        texts = set()
        for message in messages:
            for key in ("content", "tool_return", "reasoning"):
                if isinstance(message.get(key), str) and len(message[key]) > 3:
                    texts.add(message[key])
            call = message.get("tool_call") or {}
            if isinstance(call.get("arguments"), str):
                texts.add(call["arguments"])
        assert texts, scenario
        for span in build_run_spans(run_info(scenario, tool_names=("send_message",)), RESOURCE):
            values = " ".join(str(v) for v in attrs(span).values())
            assert not [t for t in texts if t in values], span.name
            assert not any(
                k.endswith(("messages", "instructions", "arguments", "result")) for k in attrs(span)
            )


# --------------------------------------------------------------------------- ids


def test_ids_are_deterministic_and_never_zero() -> None:
    run = rich_run()
    first = [ctx(s) for s in build_run_spans(run, RESOURCE)]
    second = [ctx(s) for s in build_run_spans(run, RESOURCE)]
    assert first == second
    assert all(trace and span for trace, span in first)
    assert len({span for _, span in first}) == len(first)
    # No step carries a trace id: derived from the run id, as documented.
    expected = int.from_bytes(
        hashlib.sha256(f"letta-run:{run.run_id}".encode()).digest()[:16], "big"
    )
    assert trace_id_for(run) == expected
    other = rich_run(run_id="run-99999999-2222-4333-8444-555555555555")
    assert trace_id_for(other) != trace_id_for(run)
    assert span_id_for("a", "bc") != span_id_for("ab", "c")
    assert span_id_for("run", run.run_id) == ctx(build_run_spans(run, RESOURCE)[0])[1]


def test_the_servers_trace_id_is_used_when_a_step_has_one() -> None:
    server_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    run = rich_run(
        steps=(step(1, trace_id="not-hex"), step(2, trace_id=server_trace.upper()), step(3))
    )
    spans = build_run_spans(run, RESOURCE)
    assert {ctx(s)[0] for s in spans} == {int(server_trace, 16)}
    assert spans[0].parent is None  # beside the server's HTTP root, not under it
    zero = rich_run(steps=(step(1, trace_id="0" * 32),))
    assert trace_id_for(zero) == trace_id_for(rich_run(steps=()))  # invalid: fallback


# --------------------------------------------------------------------------- passthrough


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
    spans = spans_from_trace_rows(rows("stream_two_steps.json"), RESOURCE)
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
    with caplog.at_level(logging.WARNING, logger="exporter.traces.spans"):
        assert len(spans_from_trace_rows(data, RESOURCE)) == 1
    assert f"skipped {len(data) - 1} of {len(data)}" in caplog.text
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


# --------------------------------------------------------------------------- sink, end to end


class Results:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, result: str, spans: int) -> None:
        self.calls.append((result, spans))

    def total(self, result: str) -> int:
        return sum(n for r, n in self.calls if r == result)


async def test_end_to_end_through_otlp_http() -> None:
    run = rich_run(
        steps=(
            step(1, trace_id="4bf92f3577b34da6a3ce929d0e0e4736", cached_input_tokens=800),
            step(2),
        )
    )
    built = build_run_spans(run, RESOURCE)
    passed = spans_from_trace_rows(rows("stream_two_steps.json"), RESOURCE)
    results = Results()
    with OtlpReceiver() as receiver:
        sink = SpanSink(
            OTLPSpanExporter(endpoint=receiver.traces_url, timeout=5), on_result=results
        )
        try:
            assert sink.submit(built, key=run.run_id)
            assert sink.submit(passed, key="passthrough")
            report = await sink.flush_report()
        finally:
            sink.shutdown()
        received = receiver.spans

    assert report.ok and report.exported == (run.run_id, "passthrough")
    assert results.calls == [(EXPORTED, len(built) + len(passed))]
    assert len(received) == len(built) + len(passed)

    root = next(s for s in received if s.name == "invoke_agent support-bot")
    assert root.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # joins Letta's trace
    assert root.parent_span_id == ""
    assert root.kind == "SPAN_KIND_INTERNAL"
    assert (root.start_ns, root.end_ns) == (run.created_ns, run.end_ns)
    assert root.attributes["gen_ai.agent.id"] == run.agent_id
    assert root.attributes["letta.run.background"] is True
    assert root.attributes["letta.run.step_count"] == 2
    assert root.status_code == "STATUS_CODE_UNSET"
    assert root.resource == {"service.name": "letta-exporter", "service.namespace": "agents"}
    assert (root.scope_name, root.scope_schema_url) == ("letta-exporter", SCHEMA_URL)

    chats = [s for s in received if s.name == "chat gpt-4o-mini"]
    assert len(chats) == 2
    assert {c.parent_span_id for c in chats} == {root.span_id}
    assert chats[0].attributes["gen_ai.usage.input_tokens"] == 1001
    assert chats[0].attributes["gen_ai.usage.cache_read.input_tokens"] == 800
    assert {c.kind for c in chats} == {"SPAN_KIND_CLIENT"}

    # Letta's own spans arrive in the same trace, under their own resource and parents.
    http_root = next(s for s in received if s.name.startswith("POST "))
    assert http_root.span_id == "a1b2c3d4e5f60718"
    assert http_root.kind == "SPAN_KIND_SERVER"
    assert http_root.resource["service.name"] == "letta-server"
    assert http_root.scope_name == "letta.otel.tracing"
    ttft = next(s for s in received if s.name == "time_to_first_token")
    assert ttft.parent_span_id == "0f1e2d3c4b5a6978"  # missing parent kept
    event = next(e for e in ttft.events if e.name == "time_to_first_token_ms")
    assert event.attributes == {"ttft_ms": "412"}
    assert event.time_ns == 1_795_435_244_772_511_000
    assert not any(k.startswith("parameter.") for s in received for k in s.attributes)


async def test_a_failing_collector_reports_failed_and_the_spans_can_be_retried() -> None:
    run = rich_run()
    spans = build_run_spans(run, RESOURCE)
    results = Results()
    with OtlpReceiver() as receiver:
        # A short timeout: the exporter gives up instead of backing off for 10 s.
        sink = SpanSink(
            OTLPSpanExporter(endpoint=receiver.traces_url, timeout=0.5), on_result=results
        )
        try:
            receiver.fail_with = 503
            assert sink.submit(spans, key=run.run_id)
            report = await sink.flush_report()
            assert not report.ok
            assert report.failed == (run.run_id,)
            assert report.exported == ()
            assert results.calls == [(FAILED, len(spans))]
            assert receiver.spans == []
            assert sink.queued_spans == 0  # not re-queued: the caller owns the retry

            receiver.fail_with = None
            # Rebuilding gives the very same spans (deterministic ids): retry them.
            assert sink.submit(build_run_spans(run, RESOURCE), key=run.run_id)
            assert await sink.flush()
        finally:
            sink.shutdown()
        received = receiver.spans
    assert results.calls[-1] == (EXPORTED, len(spans))
    assert sorted((s.trace_id, s.span_id) for s in received) == sorted(
        (f"{t:032x}", f"{i:016x}") for t, i in map(ctx, spans)
    )


class Recording(SpanExporter):
    def __init__(self, outcome: SpanExportResult | Exception = SpanExportResult.SUCCESS) -> None:
        self.outcome = outcome
        self.batches: list[int] = []
        self.shut = False

    def export(self, spans: Any) -> SpanExportResult:
        self.batches.append(len(spans))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def shutdown(self) -> None:
        self.shut = True


async def test_a_full_queue_drops_whole_submissions() -> None:
    results = Results()
    exporter = Recording()
    sink = SpanSink(exporter, max_queue=8, on_result=results)
    five = build_run_spans(rich_run(), RESOURCE)[:5]
    assert sink.submit(five, key="a")
    assert not sink.submit(five, key="b")  # 10 > 8: none of b is queued
    assert sink.submit(five[:3], key="c")
    assert results.calls == [(DROPPED, 5)]
    report = await sink.flush_report()
    assert report.exported == ("a", "c")
    assert exporter.batches == [8]
    assert sink.submit(five, key="b")  # room again after the flush
    sink.shutdown()
    assert results.calls[-1] == (DROPPED, 5)  # abandoned at shutdown, and said so
    assert exporter.shut
    assert not sink.submit(five, key="d")
    assert await sink.flush()  # nothing queued


async def test_export_batches_never_split_a_run_and_errors_are_failures() -> None:
    exporter = Recording()
    sink = SpanSink(exporter, max_export_batch=6)
    spans = build_run_spans(rich_run(), RESOURCE)  # 6 spans
    for key in ("a", "b", "c"):
        sink.submit(spans[:4], key=key)
    assert (await sink.flush_report()).exported == ("a", "b", "c")
    assert exporter.batches == [4, 4, 4]
    exporter.outcome = RuntimeError("collector exploded")
    results = Results()
    broken = SpanSink(exporter, on_result=results)
    broken.submit(spans, key="x")
    report = await broken.flush_report()
    assert report.failed == ("x",) and report.failed_spans == 6
    assert results.calls == [(FAILED, 6)]
    broken.shutdown()
    sink.shutdown()


async def test_sink_from_environment_over_http_with_gzip_and_headers() -> None:
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url + "/",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme,authorization=Bearer%20s3cret",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
        }
        sink = sink_from_environment(env)
        assert sink is not None
        try:
            assert sink.submit(build_run_spans(rich_run(), RESOURCE))
            assert await sink.flush()
        finally:
            sink.shutdown()
        assert receiver.encodings == ["gzip"]
        headers = receiver.request_headers[0]
        assert headers["x-tenant"] == "acme"
        assert headers["authorization"] == "Bearer s3cret"
        assert len(receiver.spans) == 6


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "x"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_tracing_is_off_unless_configured(env: dict[str, str]) -> None:
    assert sink_from_environment(env) is None


def _close(exporter: SpanExporter) -> None:
    exporter.shutdown()  # typed here; the OTLP exporters' own shutdown is not annotated


def test_exporter_choice_from_environment() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    http = exporter_from_environment(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}
    )
    assert isinstance(http, OTLPSpanExporter)
    _close(http)
    grpc = exporter_from_environment(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert isinstance(grpc, GrpcExporter)
    _close(grpc)
    console = exporter_from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(console, ConsoleSpanExporter)
    both = exporter_from_environment({"OTEL_TRACES_EXPORTER": "otlp,console"})
    assert both is not None and not isinstance(both, OTLPSpanExporter | ConsoleSpanExporter)
    both.shutdown()
    for bad in (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
    ):
        with pytest.raises(ValueError):
            exporter_from_environment(bad)


def test_resource_from_environment() -> None:
    default = resource_from_environment({})
    assert default.attributes["service.name"] == "letta-exporter"
    assert default.attributes["service.version"] == __version__
    assert default.attributes["telemetry.sdk.language"] == "python"
    custom = resource_from_environment(
        {
            "OTEL_RESOURCE_ATTRIBUTES": (
                "service.name=from-attrs,deployment.environment=prod,team=a%2Cb,broken"
            ),
            "OTEL_SERVICE_NAME": "letta-exporter-eu",
        }
    )
    assert custom.attributes["service.name"] == "letta-exporter-eu"  # OTEL_SERVICE_NAME wins
    assert custom.attributes["deployment.environment"] == "prod"
    assert custom.attributes["team"] == "a,b"
    assert "broken" not in custom.attributes
    assert (
        resource_from_environment({"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc"}).attributes[
            "service.name"
        ]
        == "svc"
    )
