"""Letta's own spans passed through: `GET /v1/runs/{id}/trace` rows as OpenTelemetry spans.

The rows are ClickHouse rows (letta-runs-api.md §7.3). They are re-emitted with their ids,
parents, times, attributes and events, minus message content: the attributes that hold
request bodies, tool arguments and LLM payloads are dropped (see
`exporter.traces.semconv.CONTENT_ATTRIBUTE_PREFIXES`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from exporter.letta.models import to_epoch_ns
from exporter.traces.ids import parse_hex_id, span_context, span_id_of, trace_id_of
from exporter.traces.semconv import (
    CONTENT_ATTRIBUTE_KEYS,
    CONTENT_ATTRIBUTE_PREFIXES,
    LETTA_TOOL_STATUS,
)
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

_TOOL_EVENT: Final = re.compile(r"^(start|finish)_.+_execution$")
"""`start_<tool>_execution` carries the tool's arguments and `finish_<tool>_execution` its
result: of these events only the name and the `status` attribute are kept."""
_TOOL_EVENT_KEEP: Final = frozenset({"status"})

_KINDS: Final[Mapping[str, SpanKind]] = {
    "INTERNAL": SpanKind.INTERNAL,
    "SERVER": SpanKind.SERVER,
    "CLIENT": SpanKind.CLIENT,
    "PRODUCER": SpanKind.PRODUCER,
    "CONSUMER": SpanKind.CONSUMER,
}
_STATUS_CODES: Final[Mapping[str, StatusCode]] = {
    "UNSET": StatusCode.UNSET,
    "OK": StatusCode.OK,
    "ERROR": StatusCode.ERROR,
}
_TIMESTAMP: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)


class _MalformedRow(ValueError):
    """A row that cannot become a span; it is skipped and counted."""


@dataclass(frozen=True, slots=True)
class RowConversion:
    """What `convert_trace_rows` made of a `/trace` answer."""

    spans: list[ReadableSpan]
    skipped: int
    """Rows that were not spans: malformed (bad ids, time, name) or duplicates."""
    dropped_attributes: int
    """Content attributes removed (request bodies, method arguments, LLM payloads)."""


def _parse_time(value: Any) -> int:
    """Epoch ns from an ISO-8601 string (no zone means UTC), epoch-ns integer or datetime."""
    if isinstance(value, bool):
        raise _MalformedRow("boolean timestamp")
    if isinstance(value, int):
        if value < 0:
            raise _MalformedRow("negative timestamp")
        return value
    if isinstance(value, datetime):
        return to_epoch_ns(value)
    if not isinstance(value, str):
        raise _MalformedRow(f"timestamp of type {type(value).__name__}")
    text = value.strip()
    if text.isdigit():
        return int(text)
    match = _TIMESTAMP.match(text)
    if match is None:
        raise _MalformedRow(f"unparseable timestamp {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    try:
        # Validates the fields (month 13 raises) without float rounding of the fraction.
        parsed = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise _MalformedRow(str(exc)) from exc
    offset_s = 0
    if zone and zone.upper() != "Z":
        # Applied by hand, not as a tzinfo: timezone() refuses offsets of 24 h and more.
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset_s = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    nanos = int((fraction or "0").ljust(9, "0"))
    return to_epoch_ns(parsed) - offset_s * NS_PER_S + nanos


def _parse_duration(value: Any) -> int:
    if isinstance(value, bool):
        raise _MalformedRow("boolean duration")
    if isinstance(value, int):
        duration = value
    elif isinstance(value, str) and value.strip().isdigit():
        duration = int(value.strip())
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        duration = int(value)
    else:
        raise _MalformedRow(f"bad duration {value!r}")
    if duration < 0:
        raise _MalformedRow("negative duration")
    return duration


def _attribute_value(value: Any) -> AttributeValue | None:
    """A valid OpenTelemetry attribute value; None drops the key."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        items = [v for v in value if v is not None]
        if not items:
            return None
        for kind in (str, bool, int, float):
            # bool is an int subclass: check exact types so [1, True] is not "ints".
            if all(type(v) is kind for v in items):
                return tuple(items)
        return json.dumps(items, sort_keys=True, default=str)
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str)


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(key, value) pairs of an attribute map; nested objects (the exporter's JSON-typed
    schema variant) become dotted keys, as they were before the collector nested them."""
    if not isinstance(value, Mapping):
        return
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, Mapping):
            yield from _flatten(item, name)
        else:
            yield name, item


def _is_content_key(key: str) -> bool:
    return key.startswith(CONTENT_ATTRIBUTE_PREFIXES) or key in CONTENT_ATTRIBUTE_KEYS


def _attributes(
    raw: Any, *, keep: frozenset[str] | None = None
) -> tuple[dict[str, AttributeValue], int]:
    """Converted attributes and how many content attributes were dropped."""
    attributes: dict[str, AttributeValue] = {}
    dropped = 0
    for key, item in _flatten(raw):
        if _is_content_key(key) or (keep is not None and key not in keep):
            dropped += 1
            continue
        value = _attribute_value(item)
        if value is not None:
            attributes[key] = value
    return attributes, dropped


def _nested(row: Mapping[str, Any], column: str, fields: Sequence[str]) -> list[dict[str, Any]]:
    """The elements of a Nested column (Events, Links) in any of the shapes it arrives in:
    flattened parallel arrays (`Events.Name`), an object of arrays, or a list of objects."""
    value = row.get(column)
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    source: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    arrays = [
        source.get(name) if isinstance(value, Mapping) else row.get(f"{column}.{name}")
        for name in fields
    ]
    if not isinstance(arrays[0], list):
        return []
    count = len(arrays[0])
    # Parallel arrays of unequal length: pair what lines up, not what does not.
    count = min([count] + [len(a) for a in arrays[1:] if isinstance(a, list)])
    return [
        {name: a[i] for name, a in zip(fields, arrays, strict=True) if isinstance(a, list)}
        for i in range(count)
    ]


def _raw_events(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _nested(row, "Events", ("Timestamp", "Name", "Attributes"))


def _events(row: Mapping[str, Any]) -> tuple[list[Event], int, str | None]:
    """Events (malformed ones skipped), dropped content attributes, and the tool status
    found in a `finish_*_execution` event (None if there is none)."""
    events: list[Event] = []
    dropped = 0
    tool_status: str | None = None
    for raw in _raw_events(row):
        name = raw.get("Name")
        if not isinstance(name, str) or not name:
            continue
        try:
            timestamp = _parse_time(raw.get("Timestamp"))
        except _MalformedRow:
            continue
        tool_event = _TOOL_EVENT.match(name)
        attributes, lost = _attributes(
            raw.get("Attributes"), keep=_TOOL_EVENT_KEEP if tool_event else None
        )
        dropped += lost
        if tool_event and tool_event.group(1) == "finish":
            status = attributes.get("status")
            if isinstance(status, str):
                tool_status = status
        events.append(Event(name, attributes, timestamp))
    return events, dropped, tool_status


def _links(row: Mapping[str, Any]) -> tuple[list[Link], int]:
    links: list[Link] = []
    dropped = 0
    for raw in _nested(row, "Links", ("TraceId", "SpanId", "TraceState", "Attributes")):
        trace_id = parse_hex_id(raw.get("TraceId"), 32)
        span_id = parse_hex_id(raw.get("SpanId"), 16)
        if trace_id is None or span_id is None:
            continue
        attributes, lost = _attributes(raw.get("Attributes"))
        dropped += lost
        context = span_context(trace_id, span_id, raw.get("TraceState"))
        links.append(Link(context, attributes))
    return links, dropped


def _enum_key(value: Any, prefix: str) -> str:
    """`SPAN_KIND_SERVER`, `Server` and `server` all give `SERVER` (exporter versions differ)."""
    if not isinstance(value, str):
        return ""
    key = value.strip().upper()
    return key.removeprefix(prefix)


def _kind(value: Any) -> SpanKind:
    # Unknown or UNSPECIFIED: OTLP says to treat an unspecified kind as INTERNAL.
    return _KINDS.get(_enum_key(value, "SPAN_KIND_"), SpanKind.INTERNAL)


def _row_status(code: Any, message: Any) -> Status:
    status_code = _STATUS_CODES.get(_enum_key(code, "STATUS_CODE_"), StatusCode.UNSET)
    if status_code is StatusCode.ERROR and isinstance(message, str) and message:
        return Status(status_code, message)
    # A description is only valid with ERROR (the SDK would log and drop it otherwise).
    return Status(status_code)


class _ResourceCache:
    """One Resource per distinct attribute set, so the encoder groups spans under it."""

    def __init__(self, base: Resource) -> None:
        self._base = base
        self._cache: dict[tuple[tuple[str, Any], ...], Resource] = {}

    def get(self, row: Mapping[str, Any]) -> Resource:
        attributes, _ = _attributes(row.get("ResourceAttributes"))
        service = row.get("ServiceName")
        if isinstance(service, str) and service and "service.name" not in attributes:
            attributes["service.name"] = service
        key = tuple(sorted(attributes.items()))
        resource = self._cache.get(key)
        if resource is None:
            # The row's attributes win: these are the Letta server's spans, not ours.
            resource = self._base.merge(Resource(attributes)) if attributes else self._base
            self._cache[key] = resource
        return resource


def _scope(
    row: Mapping[str, Any], cache: dict[tuple[str, str], InstrumentationScope]
) -> InstrumentationScope | None:
    name = row.get("ScopeName")
    if not isinstance(name, str) or not name:
        return None
    version = row.get("ScopeVersion")
    version = version if isinstance(version, str) else ""
    key = (name, version)
    if key not in cache:
        cache[key] = InstrumentationScope(name, version or None)
    return cache[key]


def _row_span(
    row: Any,
    resources: _ResourceCache,
    scopes: dict[tuple[str, str], InstrumentationScope],
) -> tuple[ReadableSpan, int]:
    if not isinstance(row, Mapping):
        raise _MalformedRow(f"row of type {type(row).__name__}")
    trace_id = parse_hex_id(row.get("TraceId"), 32)
    span_id = parse_hex_id(row.get("SpanId"), 16)
    if trace_id is None or span_id is None:
        raise _MalformedRow("missing or invalid TraceId/SpanId")
    parent_raw = row.get("ParentSpanId")
    parent: SpanContext | None = None
    if parent_raw not in (None, ""):
        parent_id = parse_hex_id(parent_raw, 16)
        if parent_id is None:
            raise _MalformedRow(f"invalid ParentSpanId {parent_raw!r}")
        # Kept even when that span is not among the rows (Letta's UI filter drops the
        # intermediate spans, §7.2): the backend shows the span under a missing parent,
        # which is the truth, rather than promoting it to a fake root.
        parent = span_context(trace_id, parent_id)
    name = row.get("SpanName")
    if not isinstance(name, str) or not name:
        raise _MalformedRow("missing SpanName")
    start = _parse_time(row.get("Timestamp"))
    end = start + _parse_duration(row.get("Duration"))

    attributes, dropped = _attributes(row.get("SpanAttributes"))
    events, dropped_in_events, tool_status = _events(row)
    links, dropped_in_links = _links(row)
    if tool_status is not None and name.endswith("_execute_tool"):
        attributes[LETTA_TOOL_STATUS] = tool_status
    span = ReadableSpan(
        name=name,
        context=span_context(trace_id, span_id, row.get("TraceState")),
        parent=parent,
        resource=resources.get(row),
        attributes=attributes,
        events=events,
        links=links,
        kind=_kind(row.get("SpanKind")),
        status=_row_status(row.get("StatusCode"), row.get("StatusMessage")),
        start_time=start,
        end_time=end,
        instrumentation_scope=_scope(row, scopes),
    )
    return span, dropped + dropped_in_events + dropped_in_links


def convert_trace_rows(rows: Sequence[Any], resource: Resource) -> RowConversion:
    """Letta's own spans (rows of `GET /v1/runs/{id}/trace`) as `ReadableSpan`s, faithfully.

    Ids, parents, names, kinds, status, start (`Timestamp`, UTC when it has no zone), end
    (start + `Duration` ns), attributes (kept as the strings ClickHouse stores), events and
    links are kept; each span's resource is `resource` overridden by the row's
    `ResourceAttributes` and `ServiceName`. Content attributes are dropped (see
    `CONTENT_ATTRIBUTE_PREFIXES`). Both the flattened and the JSON-typed column layouts
    are read. Malformed rows and repeated span ids are skipped and counted; nothing raises.
    """
    resources = _ResourceCache(resource)
    scopes: dict[tuple[str, str], InstrumentationScope] = {}
    spans: list[ReadableSpan] = []
    seen: set[tuple[int, int]] = set()
    skipped = dropped = 0
    for index, row in enumerate(rows):
        try:
            span, lost = _row_span(row, resources, scopes)
        except _MalformedRow as exc:
            log.debug("trace row %d skipped: %s", index, exc)
            skipped += 1
            continue
        except Exception:  # a conversion bug must cost one row, never the poll loop
            log.exception("trace row %d skipped: unexpected error", index)
            skipped += 1
            continue
        key = (trace_id_of(span), span_id_of(span))
        if key in seen:
            skipped += 1
            continue
        seen.add(key)
        spans.append(span)
        dropped += lost
    return RowConversion(spans, skipped, dropped)


def ttft_seconds_from_rows(rows: Sequence[Any]) -> float | None:
    """Time to first token from Letta's `time_to_first_token_ms` event (`ttft_ms`), in s.

    Only this event holds TTFT: the `time_to_first_token` span itself lasts the whole
    request (§7.4), so its duration is never used. None when no row has the event
    (non-streaming requests, spans not yet in ClickHouse): never invented.
    """
    for row in rows:
        if not isinstance(row, Mapping) or row.get("SpanName") != "time_to_first_token":
            continue
        for event in _raw_events(row):
            if event.get("Name") != "time_to_first_token_ms":
                continue
            value = dict(_flatten(event.get("Attributes"))).get("ttft_ms")
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                continue
            try:
                ms = float(value)  # ClickHouse stores it as a string of integer ms
            except ValueError:
                continue
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
    return None
