"""Span ids and contexts, shared by built, passed-through and stored spans."""

from __future__ import annotations

from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags, TraceState

_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)


def span_context(trace_id: int, span_id: int, trace_state: Any = None) -> SpanContext:
    """A local, sampled context; `trace_state` is a W3C `tracestate` header (or nothing)."""
    return SpanContext(
        trace_id,
        span_id,
        is_remote=False,
        trace_flags=_SAMPLED,
        trace_state=_trace_state(trace_state),
    )


def _trace_state(header: Any) -> TraceState:
    if not isinstance(header, str) or not header.strip():
        return TraceState()
    # from_header logs and returns an empty state for an invalid header: never raises.
    return TraceState.from_header([header])


def parse_hex_id(value: Any, digits: int) -> int | None:
    """An id from lowercase/uppercase hex of exactly `digits` digits, None if invalid or 0."""
    if not isinstance(value, str) or len(value) != digits:
        return None
    try:
        parsed = int(value, 16)
    except ValueError:
        return None
    return parsed or None


def trace_id_of(span: ReadableSpan) -> int:
    """The span's trace id (0 if it has no context, which ours always have)."""
    context = span.get_span_context()
    return context.trace_id if context is not None else 0


def span_id_of(span: ReadableSpan) -> int:
    """The span's own id (0 if it has no context, which ours always have)."""
    context = span.get_span_context()
    return context.span_id if context is not None else 0
