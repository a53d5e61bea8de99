"""Finished spans as JSON and back, so the span outbox can keep them in the state file.

A run's spans are built (or converted from `/trace` rows) once, when the run is counted,
and stored in the same transaction. What is stored is the span itself, not what it was
made from: a restart sends exactly what would have been sent, with the same ids, and no
message content (already dropped by `exporter.traces.passthrough`) ever reaches the disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from exporter.traces.ids import span_context


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """A JSON-ready dict of everything OTLP sends about `span`."""
    context = span.context
    assert context is not None  # spans we build or convert always have one
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "trace_state": context.trace_state.to_header(),
        "parent": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": [span.status.status_code.name, span.status.description],
        "attributes": _attrs_out(span.attributes),
        "events": [[e.name, e.timestamp, _attrs_out(e.attributes)] for e in span.events],
        "links": [
            [
                f"{link.context.trace_id:032x}",
                f"{link.context.span_id:016x}",
                link.context.trace_state.to_header(),
                _attrs_out(link.attributes),
            ]
            for link in span.links
        ],
        "resource": [_attrs_out(span.resource.attributes), span.resource.schema_url],
        "scope": [scope.name, scope.version, scope.schema_url] if scope is not None else None,
    }


def span_from_dict(data: Mapping[str, Any]) -> ReadableSpan:
    """Inverse of `span_to_dict`. Raises KeyError, ValueError or TypeError on a bad dict."""
    trace_id = int(data["trace_id"], 16)
    parent = data.get("parent")
    code, description = data["status"]
    status_code = StatusCode[code]
    resource_attrs, schema_url = data["resource"]
    scope = data.get("scope")
    return ReadableSpan(
        name=str(data["name"]),
        context=span_context(trace_id, int(data["span_id"], 16), data.get("trace_state")),
        parent=span_context(trace_id, int(parent, 16)) if parent else None,
        resource=Resource(_attrs_in(resource_attrs), schema_url or None),
        attributes=_attrs_in(data["attributes"]),
        events=[Event(name, _attrs_in(attrs), int(ts)) for name, ts, attrs in data["events"]],
        links=[
            Link(span_context(int(t, 16), int(s, 16), state), _attrs_in(attrs))
            for t, s, state, attrs in data["links"]
        ],
        kind=SpanKind[data["kind"]],
        # The SDK ignores a description on a status that is not ERROR.
        status=Status(status_code, description if status_code is StatusCode.ERROR else None),
        start_time=int(data["start"]),
        end_time=int(data["end"]),
        instrumentation_scope=InstrumentationScope(scope[0], scope[1], scope[2]) if scope else None,
    )


def _attrs_out(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # Sequences become JSON lists; _attrs_in turns them back into tuples.
    return {
        key: list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        for key, value in (attributes or {}).items()
    }


def _attrs_in(raw: Mapping[str, Any]) -> dict[str, AttributeValue]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}
