"""Which span exporter and resource the standard `OTEL_*` variables ask for.

Tracing is off unless they ask for it. Everything is read from the `env` mapping passed
in (no detectors that reach outside it), so tests and production agree; a value that
cannot be honoured raises ValueError, so a bad setting fails at startup, not silently.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_INSECURE,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_INSECURE,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
)
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_VERSION,
    Resource,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.util.re import parse_env_headers

from exporter import __version__
from exporter.traces.sink import ResultCallback, SpanSink

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME: Final = "letta-exporter"


class _FanOut(SpanExporter):
    """Several exporters (OTEL_TRACES_EXPORTER=otlp,console): success only if all succeed."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        self._exporters = tuple(exporters)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        results = [exporter.export(spans) for exporter in self._exporters]
        ok = all(result is SpanExportResult.SUCCESS for result in results)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        for exporter in self._exporters:
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(exporter.force_flush(timeout_millis) for exporter in self._exporters)


def _get(env: Mapping[str, str], *names: str) -> str | None:
    """The first of `names` set to a non-blank value (signal-specific names go first)."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _timeout(env: Mapping[str, str]) -> float | None:
    raw = _get(env, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT)
    if raw is None:
        return None
    try:
        # Seconds, as the Python SDK documents and its exporters read it (the spec says
        # milliseconds; we follow the SDK so all Python services agree).
        value = float(raw)
    except ValueError:
        raise ValueError(f"OTEL_EXPORTER_OTLP_TIMEOUT is not a number: {raw!r}") from None
    if value <= 0:
        raise ValueError(f"OTEL_EXPORTER_OTLP_TIMEOUT must be positive: {raw!r}")
    return value


def _headers(env: Mapping[str, str]) -> dict[str, str]:
    raw = _get(env, OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS)
    return dict(parse_env_headers(raw, liberal=True)) if raw else {}


def _http_exporter(env: Mapping[str, str]) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = _get(env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    if endpoint is None:
        # The signal-less variable is a base URL: the signal path is appended (OTLP spec).
        base = _get(env, OTEL_EXPORTER_OTLP_ENDPOINT) or "http://localhost:4318"
        endpoint = base.rstrip("/") + "/v1/traces"
    compression_name = (
        _get(env, OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION) or "none"
    ).lower()
    compressions = {
        "none": Compression.NoCompression,
        "gzip": Compression.Gzip,
        "deflate": Compression.Deflate,
    }
    if compression_name not in compressions:
        raise ValueError(f"unsupported OTLP compression {compression_name!r}")
    # Endpoint, headers, timeout and compression are passed explicitly so `env` is what
    # counts; TLS files and credential providers are read by the exporter itself from the
    # process environment (OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE, CLIENT_KEY, ...).
    return OTLPSpanExporter(
        endpoint=endpoint,
        headers=_headers(env),
        timeout=_timeout(env),
        compression=compressions[compression_name],
    )


def _grpc_exporter(env: Mapping[str, str]) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = _get(env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT)
    insecure_raw = _get(env, OTEL_EXPORTER_OTLP_TRACES_INSECURE, OTEL_EXPORTER_OTLP_INSECURE)
    # Unset: the exporter decides from the endpoint's scheme (http:// means plaintext).
    insecure = insecure_raw.lower() == "true" if insecure_raw is not None else None
    headers = _headers(env)
    # Compression and TLS files are read by the exporter from the process environment.
    return OTLPSpanExporter(
        endpoint=endpoint,
        insecure=insecure,
        headers=headers or None,
        timeout=_timeout(env),
    )


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = (
        _get(env, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL)
        or "http/protobuf"
    ).lower()
    if protocol == "http/protobuf":
        return _http_exporter(env)
    if protocol == "grpc":
        return _grpc_exporter(env)
    raise ValueError(
        f"unsupported OTLP protocol {protocol!r} for traces (use http/protobuf or grpc)"
    )


def exporter_from_environment(env: Mapping[str, str]) -> SpanExporter | None:
    """The span exporter the `OTEL_*` variables ask for, or None when tracing is off.

    On when `OTEL_TRACES_EXPORTER` names `otlp` and/or `console`, or, when that variable
    is unset, when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
    is set (the SDK would default to otlp on localhost; an exporter that nobody configured
    should not send traces anywhere). `OTEL_SDK_DISABLED=true` or `..._EXPORTER=none`
    turns it off. Raises ValueError on a value it cannot honour (fail at startup, not
    silently).
    """
    if (_get(env, OTEL_SDK_DISABLED) or "").lower() == "true":
        return None
    names_raw = _get(env, OTEL_TRACES_EXPORTER)
    if names_raw is None:
        configured = _get(env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT)
        names = ["otlp"] if configured else []
    else:
        names = [name.strip().lower() for name in names_raw.split(",") if name.strip()]
    if "none" in names:
        return None
    exporters: list[SpanExporter] = []
    for name in dict.fromkeys(names):  # in order, without repeats
        if name == "otlp":
            exporters.append(_otlp_exporter(env))
        elif name == "console":
            exporters.append(ConsoleSpanExporter(service_name=None))
        else:
            raise ValueError(f"unsupported OTEL_TRACES_EXPORTER value {name!r}")
    if not exporters:
        return None
    return exporters[0] if len(exporters) == 1 else _FanOut(exporters)


def sink_from_environment(
    env: Mapping[str, str], *, on_result: ResultCallback | None = None
) -> SpanSink | None:
    """A `SpanSink` for the exporter the `OTEL_*` variables configure, or None (tracing off).

    See `exporter_from_environment` for when tracing is on. Protocol from
    `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`
    (default) or `grpc`. Endpoint, headers (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`),
    timeout (seconds, as the Python SDK reads it) and compression come from `env`.
    """
    exporter = exporter_from_environment(env)
    if exporter is None:
        return None
    return SpanSink(exporter, on_result=on_result)


def _parse_resource_attributes(raw: str) -> dict[str, str]:
    """`OTEL_RESOURCE_ATTRIBUTES` (key=value, comma separated, values percent-encoded),
    parsed the way the SDK's environment detector does; malformed items are skipped."""
    attributes: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            log.warning("ignoring malformed OTEL_RESOURCE_ATTRIBUTES item %r", item)
            continue
        attributes[key.strip()] = urllib.parse.unquote(value.strip())
    return attributes


def resource_from_environment(env: Mapping[str, str]) -> Resource:
    """The exporter's own resource: telemetry.sdk.*, `service.version`, then
    `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME` (default "letta-exporter"), each
    overriding the one before, as the SDK orders them. Read from `env` only (no detectors
    that reach outside it), so it is the same in tests and in production."""
    attributes: dict[str, str] = {
        TELEMETRY_SDK_LANGUAGE: "python",
        TELEMETRY_SDK_NAME: "opentelemetry",
        TELEMETRY_SDK_VERSION: sdk_version,
        SERVICE_NAME: DEFAULT_SERVICE_NAME,
        SERVICE_VERSION: __version__,
    }
    attributes.update(_parse_resource_attributes(_get(env, OTEL_RESOURCE_ATTRIBUTES) or ""))
    service_name = _get(env, OTEL_SERVICE_NAME)
    if service_name:
        attributes[SERVICE_NAME] = service_name
    return Resource(attributes)
