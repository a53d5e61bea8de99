"""The span sink: a bounded queue in front of an exporter, and what each flush reports.

The end-to-end tests send through the real OTLP/HTTP exporter to tests/otlp_receiver.py.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from exporter.traces.build import build_run_spans
from exporter.traces.passthrough import convert_trace_rows
from exporter.traces.semconv import SCHEMA_URL
from exporter.traces.sink import (
    DROPPED,
    EXPORTED,
    FAILED,
    FlushReport,
    SpanSink,
)
from tests.otlp_receiver import OtlpReceiver, no_leftover_threads  # noqa: F401 - autouse
from tests.span_inputs import RESOURCE, ctx, rich_run, rows, step


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
    passed = convert_trace_rows(rows("stream_two_steps.json"), RESOURCE).spans
    results = Results()
    with OtlpReceiver() as receiver:
        sink = SpanSink(
            OTLPSpanExporter(endpoint=receiver.traces_url, timeout=5), on_result=results
        )
        try:
            assert sink.submit(built, key=run.run_id)
            assert sink.submit(passed, key="passthrough")
            report = await sink.flush()
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
            report = await sink.flush()
            assert not report.ok
            assert report.failed == (run.run_id,)
            assert report.exported == ()
            assert results.calls == [(FAILED, len(spans))]
            assert receiver.spans == []
            assert await sink.flush() == FlushReport()  # not re-queued: the caller owns the retry

            receiver.fail_with = None
            # Rebuilding gives the very same spans (deterministic ids): retry them.
            assert sink.submit(build_run_spans(run, RESOURCE), key=run.run_id)
            assert (await sink.flush()).ok
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
    report = await sink.flush()
    assert report.exported == ("a", "c")
    assert exporter.batches == [8]
    assert sink.submit(five, key="b")  # room again after the flush
    sink.shutdown()
    assert results.calls[-1] == (DROPPED, 5)  # abandoned at shutdown, and said so
    assert exporter.shut
    assert not sink.submit(five, key="d")
    assert (await sink.flush()).ok  # nothing queued


async def test_export_batches_never_split_a_run_and_errors_are_failures() -> None:
    exporter = Recording()
    sink = SpanSink(exporter, max_export_batch=6)
    spans = build_run_spans(rich_run(), RESOURCE)  # 6 spans
    for key in ("a", "b", "c"):
        sink.submit(spans[:4], key=key)
    assert (await sink.flush()).exported == ("a", "b", "c")
    assert exporter.batches == [4, 4, 4]
    exporter.outcome = RuntimeError("collector exploded")
    results = Results()
    broken = SpanSink(exporter, on_result=results)
    broken.submit(spans, key="x")
    report = await broken.flush()
    assert report.failed == ("x",) and report.failed_spans == 6
    assert results.calls == [(FAILED, 6)]
    broken.shutdown()
    sink.shutdown()
