"""Tracing configured from the standard `OTEL_*` variables: on or off, which exporter,
which resource. The gzip test sends through the real OTLP/HTTP exporter to
tests/otlp_receiver.py.
"""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter

from exporter import __version__
from exporter.traces.build import build_run_spans
from exporter.traces.otel_environment import (
    exporter_from_environment,
    resource_from_environment,
    sink_from_environment,
)
from tests.otlp_receiver import OtlpReceiver, no_leftover_threads  # noqa: F401 - autouse
from tests.span_inputs import RESOURCE, rich_run


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
            assert (await sink.flush()).ok
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
