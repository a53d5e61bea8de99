"""The span outbox's JSON form: what is stored is exactly what OTLP would have sent."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from exporter.traces.build import build_run_spans
from exporter.traces.codec import span_from_dict, span_to_dict
from exporter.traces.passthrough import convert_trace_rows
from tests.span_inputs import rich_run, rows, run_info

RESOURCE = Resource({"service.name": "letta-exporter", "deployment.environment": "test"})


def roundtrip(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    stored = json.dumps([span_to_dict(s) for s in spans])
    return [span_from_dict(d) for d in json.loads(stored)]


@pytest.mark.parametrize(
    "spans",
    [
        pytest.param(build_run_spans(rich_run(), RESOURCE), id="built-rich"),
        pytest.param(build_run_spans(run_info("stream_fail_after_2"), RESOURCE), id="built-failed"),
        pytest.param(convert_trace_rows(rows("stream_two_steps.json"), RESOURCE).spans, id="rows"),
        pytest.param(convert_trace_rows(rows("json_typed.json"), RESOURCE).spans, id="json-typed"),
    ],
)
def test_stored_spans_encode_to_the_same_otlp_request(spans: list[ReadableSpan]) -> None:
    assert spans
    before = encode_spans(spans).SerializeToString(deterministic=True)
    assert encode_spans(roundtrip(spans)).SerializeToString(deterministic=True) == before


def test_a_damaged_entry_raises_a_plain_error() -> None:
    data = span_to_dict(build_run_spans(rich_run(), RESOURCE)[0])
    del data["span_id"]
    with pytest.raises(KeyError):
        span_from_dict(data)
