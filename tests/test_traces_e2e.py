"""Traces end to end: the real exporter, the fake Letta API and a real OTLP/HTTP receiver.

Built traces (server without ClickHouse: `/trace` answers 501), passthrough of the
server's own spans, exemplars in the OpenMetrics exposition, ids stable across restarts
and re-emission, nothing resent after a restart, and a failing collector that delays
spans without losing them or stalling the metrics.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on, running
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.tools import require_tool

pytestmark = pytest.mark.e2e

ROWS = Path(__file__).parent / "fixtures" / "trace_rows" / "stream_two_steps.json"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACE_FLAGS = ("--traces.settle-delay=0.5s",)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
        "OTEL_SERVICE_NAME": "letta-exporter-e2e",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }


def traced(fake: FakeLetta, state: Path, receiver: OtlpReceiver, *args: str) -> Exporter:
    """An exporter on `fake` sending its traces to `receiver` (not started)."""
    return Exporter(fake.base_url, state, *TRACE_FLAGS, *args, env=otel_env(receiver))


def finish(fake: FakeLetta, agent: str, *, steps: int, failed: bool = False) -> str:
    run_id = fake.create_run(agent)
    fake.update_run(run_id, status="running")
    for n in range(steps):
        fake.add_step(
            run_id, model="openai/gpt-4o-mini", prompt_tokens=100 + n, completion_tokens=7
        )
    if failed:
        fake.update_run(run_id, status="failed", stop_reason="llm_api_error")
    else:
        fake.update_run(run_id, status="completed", stop_reason="end_turn")
    return run_id


def roots(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    """Built root spans by run id."""
    return {
        s.attributes["letta.run.id"]: s
        for s in spans
        if s.name.startswith("invoke_agent ") and "letta.run.id" in s.attributes
    }


def ids(spans: list[ReceivedSpan]) -> Counter[tuple[str, str, str]]:
    return Counter((s.trace_id, s.span_id, s.parent_span_id) for s in spans)


def test_built_traces_match_the_metrics_and_keep_their_ids_across_restarts(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    state = tmp_path / "s.sqlite"
    with FakeLetta() as fake:
        with running(traced(fake, state, receiver)) as exp:
            exp.wait_ready()
            ok_run = finish(fake, "agent-ok", steps=2)
            failed_run = finish(fake, "agent-bad", steps=1, failed=True)
            exp.wait_for(lambda: len(roots(receiver.spans)) == 2, what="two root spans")
            exp.wait_for(
                lambda: (
                    exp.value("letta_exporter_spans_exported_total", result="exported")
                    == len(receiver.spans)
                ),
                what="the exported counter to match what the receiver got",
            )
            spans = receiver.spans
            assert exp.finished() == expected(fake.truth())

            ok_root, bad_root = roots(spans)[ok_run], roots(spans)[failed_run]
            assert ok_root.parent_span_id == "" and ok_root.kind == "SPAN_KIND_INTERNAL"
            assert ok_root.attributes["gen_ai.operation.name"] == "invoke_agent"
            assert ok_root.attributes["gen_ai.agent.id"] == "agent-ok"
            assert ok_root.attributes["letta.run.status"] == "completed"
            assert ok_root.attributes["letta.run.stop_reason"] == "end_turn"
            assert ok_root.status_code != "STATUS_CODE_ERROR"
            assert ok_root.resource["service.name"] == "letta-exporter-e2e"
            assert ok_root.resource["deployment.environment.name"] == "ci"
            assert bad_root.status_code == "STATUS_CODE_ERROR"
            assert bad_root.attributes["error.type"]
            assert bad_root.attributes["letta.run.stop_reason"] == "llm_api_error"

            steps = [
                s for s in spans if s.trace_id == ok_root.trace_id and s.name.startswith("chat")
            ]
            assert len(steps) == 2
            assert {s.parent_span_id for s in steps} == {ok_root.span_id}
            assert sorted(s.attributes["gen_ai.usage.input_tokens"] for s in steps) == [100, 101]
            assert all(s.attributes["gen_ai.request.model"] == "gpt-4o-mini" for s in steps)
            assert all(ok_root.start_ns <= s.start_ns <= s.end_ns <= ok_root.end_ns for s in steps)

            # The root span lasts exactly what the run put into the duration histogram.
            for agent, root in (("agent-ok", ok_root), ("agent-bad", bad_root)):
                sample = exp.value("letta_run_duration_seconds_sum", agent=agent)
                assert (root.end_ns - root.start_ns) / 1e9 == pytest.approx(sample, abs=1e-9)

            # Exemplars only where OpenMetrics is negotiated, pointing at the run's trace.
            openmetrics = exp.get("/metrics", headers={"Accept": OPENMETRICS}).text
            assert f'# {{trace_id="{ok_root.trace_id}"}}' in openmetrics
            assert f'# {{trace_id="{bad_root.trace_id}"}}' in openmetrics
            assert "trace_id" not in exp.metrics_text()
            # The OpenMetrics form parses strictly, with the exemplars where they belong...
            exemplars = {
                (sample.name, sample.exemplar.labels["trace_id"])
                for family in openmetrics_families(openmetrics)
                for sample in family.samples
                if sample.exemplar is not None
            }
            assert ("letta_run_duration_seconds_bucket", ok_root.trace_id) in exemplars
            # ...and the classic text form still passes promtool (which reads only that).
            check = subprocess.run(
                [require_tool("promtool", "prometheus"), "check", "metrics"],
                input=exp.metrics_text(),
                capture_output=True,
                text=True,
            )
            assert check.returncode == 0, check.stdout + check.stderr

            assert exp.terminate() == 0
        first = ids(receiver.spans)

        # A restart on the same state resends nothing...
        with running(traced(fake, state, receiver)) as exp:
            exp.wait_ready()
            third = finish(fake, "agent-ok", steps=1)
            exp.wait_for(lambda: third in roots(receiver.spans), what="the new run's trace")
            exp.wait_for(lambda: exp.value("letta_exporter_spans_pending_runs") == 0)
        assert all(count == 1 for count in ids(receiver.spans).values())
        assert set(first) <= set(ids(receiver.spans))

        # ...and re-emitting the same runs from scratch gives the same ids.
        receiver.clear()
        with running(traced(fake, tmp_path / "fresh.sqlite", receiver, "--backfill=1h")) as exp:
            exp.wait_for(lambda: len(roots(receiver.spans)) == 3, what="re-emitted traces")
        assert set(first) <= set(ids(receiver.spans))


def test_the_servers_own_spans_pass_through_and_give_the_ttft(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    rows = json.loads(ROWS.read_text())["rows"]
    with FakeLetta() as fake:
        run_id = fake.create_run("agent-bbc99752-3923-4b0b-9def-de4d1d102cf0")
        fake.update_run(run_id, status="running")
        fake.add_step(run_id, trace_id=rows[0]["TraceId"], prompt_tokens=10, completion_tokens=2)
        fake.set_trace(run_id, rows)
        with exporter_on(fake.base_url, tmp_path, *TRACE_FLAGS, env=otel_env(receiver)) as exp:
            fake.update_run(run_id, status="completed", stop_reason="end_turn")
            exp.wait_for(lambda: len(receiver.spans) == len(rows), what="every row as a span")
            exp.wait_for(lambda: exp.value("letta_run_time_to_first_token_seconds_count") == 1)
            spans = {s.span_id: s for s in receiver.spans}
            assert set(spans) == {row["SpanId"] for row in rows}
            for row in rows:
                span = spans[row["SpanId"]]
                assert span.trace_id == row["TraceId"]
                assert span.parent_span_id == row["ParentSpanId"]
                assert span.name == row["SpanName"]
                assert span.end_ns - span.start_ns == row["Duration"]
                assert not any(k.startswith("http.request.body.") for k in span.attributes)
            ttft = next(s for s in receiver.spans if s.name == "time_to_first_token")
            assert "time_to_first_token_ms" in {e.name for e in ttft.events}
            event = next(e for e in ttft.events if e.name == "time_to_first_token_ms")
            ttft_s = float(event.attributes["ttft_ms"]) / 1000
            assert exp.value("letta_run_time_to_first_token_seconds_sum") == pytest.approx(ttft_s)
            openmetrics = exp.get("/metrics", headers={"Accept": OPENMETRICS}).text
            assert f'# {{trace_id="{rows[0]["TraceId"]}"}}' in openmetrics


def test_a_failing_collector_delays_spans_without_losing_them_or_the_metrics(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    receiver.fail_with = 503
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path, *TRACE_FLAGS, env=otel_env(receiver)) as exp,
    ):
        runs = [finish(fake, f"agent-{i}", steps=1) for i in range(5)]
        # Metrics do not wait for traces.
        exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="runs counted")
        exp.wait_for(lambda: exp.value("letta_exporter_spans_exported_total", result="failed") > 0)
        assert exp.value("letta_exporter_spans_pending_runs") == 5
        receiver.fail_with = None
        exp.wait_for(lambda: set(roots(receiver.spans)) == set(runs), timeout=60)
        exp.wait_for(lambda: exp.value("letta_exporter_spans_pending_runs") == 0)
        assert exp.value("letta_exporter_spans_exported_total", result="dropped") == 0
        assert all(count == 1 for count in ids(receiver.spans).values())


def test_a_dead_collector_costs_at_most_the_outbox_cap(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    receiver.fail_with = 503
    with (
        FakeLetta() as fake,
        exporter_on(
            fake.base_url,
            tmp_path,
            *TRACE_FLAGS,
            "--traces.max-pending=2",
            env=otel_env(receiver),
        ) as exp,
    ):
        for i in range(5):
            finish(fake, f"agent-{i}", steps=1)
        exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="runs counted")
        # 3 runs of 2 spans (root + one step) each did not fit.
        exp.wait_for(
            lambda: exp.value("letta_exporter_spans_exported_total", result="dropped") == 6
        )
        assert exp.value("letta_exporter_spans_pending_runs") == 2
        receiver.fail_with = None
        exp.wait_for(lambda: len(roots(receiver.spans)) == 2, timeout=60)
        exp.wait_for(lambda: exp.value("letta_exporter_spans_pending_runs") == 0)
