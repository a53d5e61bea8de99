"""Built spans: a run from the runs API as an `invoke_agent` trace, with deterministic ids.

Built spans come from the real 0.16.8 fixtures (run.json, steps.json, metrics.json).
"""

from __future__ import annotations

import hashlib

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from exporter import __version__
from exporter.traces.build import build_run_spans, span_id_for, trace_id_for
from exporter.traces.semconv import LETTA_TIMING, SCHEMA_URL
from tests.conftest import load_fixture
from tests.span_inputs import MS, RESOURCE, T0, attrs, ctx, parent_id, rich_run, run_info, step


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
