"""A real OTLP/HTTP trace endpoint for tests: POST /v1/traces on 127.0.0.1, decoded.

It speaks the wire format a collector speaks (protobuf `ExportTraceServiceRequest`,
optionally gzip or deflate encoded) so tests exercise the real `OTLPSpanExporter`, and it
keeps each span in plain Python values. Set `fail_with` to a status code (e.g. 503) to
play a failing collector.

    with OtlpReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url)
        ...
        assert receiver.spans[0].name == "invoke_agent ..."

One request at a time, HTTP/1.0 (the connection closes after each answer), so leaving
the block leaves no thread or socket behind.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as the Python value it holds."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    """Repeated KeyValue as a dict."""
    result: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        result[pair.key] = any_value(pair.value)
    return result


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as a collector would see it, ids in lowercase hex."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: str  # SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, ...
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    links: list[ReceivedLink]
    status_code: str  # STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR
    status_message: str
    trace_state: str
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    scope_schema_url: str


@dataclass
class _State:
    fail_with: int | None = None
    requests: int = 0
    encodings: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _decode(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=Span.SpanKind.Name(span.kind),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=attributes(span.attributes),
                        events=[
                            ReceivedEvent(e.name, e.time_unix_nano, attributes(e.attributes))
                            for e in span.events
                        ],
                        links=[
                            ReceivedLink(
                                link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes)
                            )
                            for link in span.links
                        ],
                        status_code=Status.StatusCode.Name(span.status.code),
                        status_message=span.status.message,
                        trace_state=span.trace_state,
                        resource=resource,
                        scope_name=scope.name,
                        scope_version=scope.version,
                        scope_schema_url=scope_spans.schema_url,
                    )
                )
    return spans


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        with state.lock:
            state.requests += 1
            state.encodings.append(encoding)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            fail_with = state.fail_with
        if self.path != "/v1/traces":
            self._answer(404, b"")
            return
        if fail_with is not None:
            self._answer(fail_with, b"")
            return
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception:
            self._answer(400, b"")
            return
        decoded = _decode(request)
        with state.lock:
            state.spans.extend(decoded)
        self._answer(200, ExportTraceServiceResponse().SerializeToString())

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(HTTPServer):
    state: _State


class OtlpReceiver:
    """Context manager: an OTLP/HTTP trace receiver on an ephemeral loopback port."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> OtlpReceiver:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = self._state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-receiver"
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def traces_url(self) -> str:
        """The full OTLP/HTTP traces URL (what OTEL_EXPORTER_OTLP_TRACES_ENDPOINT takes)."""
        return self.base_url + "/v1/traces"

    @property
    def base_url(self) -> str:
        """The base URL (what OTEL_EXPORTER_OTLP_ENDPOINT takes)."""
        assert self._server is not None, "receiver not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def fail_with(self) -> int | None:
        return self._state.fail_with

    @fail_with.setter
    def fail_with(self, code: int | None) -> None:
        """Answer every request with this status (e.g. 503) until set back to None."""
        with self._state.lock:
            self._state.fail_with = code

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        with self._state.lock:
            return list(self._state.spans)

    @property
    def requests(self) -> int:
        """POSTs received, failed ones included."""
        with self._state.lock:
            return self._state.requests

    @property
    def encodings(self) -> list[str]:
        """Content-Encoding of each request ("" when none)."""
        with self._state.lock:
            return list(self._state.encodings)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers of each request, names lowercased."""
        with self._state.lock:
            return list(self._state.headers)

    def by_name(self, name: str) -> ReceivedSpan:
        """The single received span with this name."""
        matches = [span for span in self.spans if span.name == name]
        assert len(matches) == 1, f"{len(matches)} spans named {name!r}"
        return matches[0]

    def clear(self) -> None:
        with self._state.lock:
            self._state.spans.clear()
            self._state.requests = 0
            self._state.encodings.clear()
            self._state.headers.clear()


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
