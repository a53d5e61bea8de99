"""Finished Letta runs as OpenTelemetry spans: built from the runs API, or passed through.

Two sources, one output type (`ReadableSpan`, ready for any `SpanExporter`):

- **Built** (`build_run_spans`): from what the runs API says about a finished run. A
  root `invoke_agent {agent}` span covers the run exactly as the duration metric saw it,
  with one `chat {model}` child per step and one `execute_tool {tool}` child per tool the
  run used. Ids are deterministic (re-emitting a run yields the same spans) and the trace
  id is Letta's own when a step carries one, so the spans join the server's native trace.
- **Passed through** (`spans_from_trace_rows`): the server's own spans read back from
  `GET /v1/runs/{id}/trace` (ClickHouse rows, letta-runs-api.md §7.3), re-emitted with
  their ids, parents, times, attributes and events, minus message content.

Spans are constructed directly, not through a Tracer: a Tracer would pick its own ids and
clock, and here both must be exact. Message content is never exported: built spans carry
counts, names and ids only; passed-through spans lose the attributes that hold request
bodies, tool arguments and LLM payloads (see `CONTENT_ATTRIBUTE_PREFIXES`).

Semantic conventions are pinned to `SEMCONV_VERSION`, the version the installed
`opentelemetry-semantic-conventions` package was generated from; every `gen_ai.*` name
comes from that package's constants (checked by tests/test_semconv.py). In that release
the GenAI names are flagged as moved to the separate semantic-conventions-genai
repository, unchanged; the scope's schema_url states which version we speak.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_AGENT_ID,
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_TOOL_NAME,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    GenAiOperationNameValues,
    GenAiProviderNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE, ErrorTypeValues
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import AttributeValue

from exporter import __version__
from exporter.core.run_errors import (
    failure_error_type,
    normalise_error_type,
)
from exporter.core.run_info import RunInfo, StepInfo
from exporter.letta.models import FAILED_STOP_REASONS
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

SEMCONV_VERSION: Final = "1.44.0"
"""Semantic-conventions version of every attribute we emit: the one
opentelemetry-semantic-conventions 0.66b2 was generated from (its newest schema URL)."""
SCHEMA_URL: Final = Schemas.V1_44_0.value
SCOPE: Final = InstrumentationScope("letta-exporter", __version__, SCHEMA_URL)
"""Scope of built spans. Passed-through spans keep the scope their row names."""

# Our own attributes. `letta.*` is the provider-specific namespace the GenAI conventions
# leave room for; everything standard comes from the semconv package instead.
LETTA_RUN_ID: Final = "letta.run.id"
LETTA_RUN_STATUS: Final = "letta.run.status"
LETTA_RUN_STOP_REASON: Final = "letta.run.stop_reason"
LETTA_RUN_BACKGROUND: Final = "letta.run.background"
LETTA_RUN_TYPE: Final = "letta.run.type"
LETTA_RUN_STEP_COUNT: Final = "letta.run.step_count"
LETTA_STEP_ID: Final = "letta.step.id"
LETTA_STEP_INDEX: Final = "letta.step.index"
LETTA_STEP_STATUS: Final = "letta.step.status"
LETTA_STEP_STOP_REASON: Final = "letta.step.stop_reason"
LETTA_STEP_MODEL_HANDLE: Final = "letta.step.model_handle"
LETTA_TIMING: Final = "letta.timing"
"""`measured` when the span's start and end come from the API, `estimated` when they
were laid out by us (the runs API has no per-step timestamps)."""
LETTA_TOOL_STATUS: Final = "letta.tool.status"
"""Added to passed-through `*._execute_tool` spans from their `finish_*_execution` event:
Letta marks those spans OK even when the tool failed (letta-runs-api.md §7.4)."""

TIMING_MEASURED: Final = "measured"
TIMING_ESTIMATED: Final = "estimated"

LETTA_PROVIDER: Final = "letta"
"""`gen_ai.provider.name` of the `invoke_agent` span: the agent runtime is Letta (a custom
value, which the conventions allow); each `chat` span names the model provider."""

ERROR_STOP_REASONS: Final = FAILED_STOP_REASONS

# Letta's provider names (step.provider_name) mapped to the conventions' well-known
# values, which MUST be used when one applies; anything else is kept as Letta spells it.
_PROVIDERS: Final[Mapping[str, str]] = {
    "openai": GenAiProviderNameValues.OPENAI.value,
    "anthropic": GenAiProviderNameValues.ANTHROPIC.value,
    "google_ai": GenAiProviderNameValues.GCP_GEMINI.value,
    "google_vertex": GenAiProviderNameValues.GCP_VERTEX_AI.value,
    "azure": GenAiProviderNameValues.AZURE_AI_OPENAI.value,
    "bedrock": GenAiProviderNameValues.AWS_BEDROCK.value,
    "groq": GenAiProviderNameValues.GROQ.value,
    "deepseek": GenAiProviderNameValues.DEEPSEEK.value,
    "xai": GenAiProviderNameValues.X_AI.value,
    "mistral": GenAiProviderNameValues.MISTRAL_AI.value,
    "cohere": GenAiProviderNameValues.COHERE.value,
}

_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_OTHER_ERROR: Final = ErrorTypeValues.OTHER.value


# --------------------------------------------------------------------------- ids


def _digest_int(text: str, size: int) -> int:
    """A non-zero integer from the first `size` bytes of sha256(text); the ids that
    would be 0 (invalid in OpenTelemetry) fall back to the next bytes, then 1."""
    digest = hashlib.sha256(text.encode()).digest()
    for offset in range(0, len(digest) - size + 1, size):
        value = int.from_bytes(digest[offset : offset + size], "big")
        if value:
            return value
    return 1


def _parse_hex_id(value: Any, digits: int) -> int | None:
    """An id from lowercase/uppercase hex of exactly `digits` digits, None if invalid or 0."""
    if not isinstance(value, str) or len(value) != digits:
        return None
    try:
        parsed = int(value, 16)
    except ValueError:
        return None
    return parsed or None


def trace_id_for(run: RunInfo) -> int:
    """The trace id of a run's built spans.

    The server's own trace id when a step carries a valid one (so the spans join Letta's
    native trace); otherwise the first 16 bytes of sha256("letta-run:" + run_id), so
    re-emitting the same run always lands in the same trace. Never 0.
    """
    for step in run.steps:
        server_id = _parse_hex_id((step.trace_id or "").strip(), 32)
        if server_id is not None:
            return server_id
    return _digest_int("letta-run:" + run.run_id, 16)


def span_id_for(*parts: str) -> int:
    """A deterministic 64-bit span id from its parts (e.g. "step", run_id, step_id). Never 0.

    Parts are joined with a unit separator so ("a", "bc") and ("ab", "c") differ.
    """
    return _digest_int("letta-span:" + "\x1f".join(parts), 8)


def trace_id_of(span: ReadableSpan) -> int:
    """The span's trace id (0 if it has no context, which ours always have)."""
    context = span.get_span_context()
    return context.trace_id if context is not None else 0


def span_id_of(span: ReadableSpan) -> int:
    """The span's own id (0 if it has no context, which ours always have)."""
    context = span.get_span_context()
    return context.span_id if context is not None else 0


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)


# --------------------------------------------------------------------------- built spans


def _run_error_type(run: RunInfo) -> str | None:
    """`error.type` of a run, or None when it did not end in error.

    Failed runs are errors. So are *completed* runs whose stop reason Letta itself maps to
    `failed` (letta-runs-api.md §2.3, §5.2: e.g. completed + llm_api_error after some
    steps); the run's real status stays visible in `letta.run.status`. Cancelled runs are
    not errors: someone chose to stop them.
    """
    failed = run.status == "failed" or (
        run.status == "completed" and run.stop_reason in ERROR_STOP_REASONS
    )
    if not failed:
        return None
    # The same error type the failure counter uses, then the stop reason (failed runs
    # can have neither, §5); all low-cardinality.
    step_error = next(
        (s.error_type for s in run.steps if s.status == "failed" and s.error_type), None
    )
    return failure_error_type(step_error, run.error_type) or run.stop_reason or _OTHER_ERROR


def _step_error_type(step: StepInfo) -> str | None:
    if step.status != "failed":
        return None
    return normalise_error_type(step.error_type) or step.stop_reason or _OTHER_ERROR


def _status(error_type: str | None) -> Status:
    # Left UNSET on success, as the conventions ask of instrumentation (OK is for operators).
    if error_type is None:
        return Status(StatusCode.UNSET)
    return Status(StatusCode.ERROR, error_type)


def provider_name(step: StepInfo) -> str | None:
    """The step's `gen_ai.provider.name`: a well-known value when one applies."""
    if not step.provider_name:
        return None
    name = step.provider_name.strip().lower()
    return _PROVIDERS.get(name, name)


def _put(attributes: dict[str, AttributeValue], key: str, value: AttributeValue | None) -> None:
    if value is not None and value != "":
        attributes[key] = value


def _slot(start: int, end: int, index: int, count: int) -> tuple[int, int]:
    """The index-th of `count` equal, contiguous slices of [start, end] (integer ns)."""
    width = end - start
    return start + width * index // count, start + width * (index + 1) // count


def _step_times(
    step: StepInfo, root: tuple[int, int], index: int, count: int
) -> tuple[int, int, str]:
    start, end = root
    if step.start_ns is not None and step.duration_ns is not None and step.duration_ns >= 0:
        # Measured, but on the step's host clock: clamp into the run so children nest.
        s = min(max(step.start_ns, start), end)
        return s, min(max(step.start_ns + step.duration_ns, s), end), TIMING_MEASURED
    s, e = _slot(start, end, index, count)
    return s, e, TIMING_ESTIMATED


def build_run_spans(run: RunInfo, resource: Resource) -> list[ReadableSpan]:
    """The spans of one finished run: root first, then steps, then tools.

    - Root `invoke_agent {agent name or id}`, kind INTERNAL, start `created_ns`, end
      `end_ns` (its duration is the `letta_run_duration_seconds` sample), no parent (it
      starts the trace, or sits beside the server's HTTP span when it joins Letta's trace).
      INTERNAL, not CLIENT: the conventions keep CLIENT for a caller timing a remote agent
      service; this span describes the run as the Letta runtime executed it, with no
      caller of ours, and CLIENT would draw a false letta-exporter → peer edge in service
      graphs.
    - One `chat {model}` child per step, kind CLIENT (the conventions' kind for a call to a
      model provider, which each Letta step makes), with its token usage. The runs API
      has no step timestamps, so unless a step has measured timings the steps are laid
      out evenly, back to back, inside the root and marked `letta.timing = "estimated"`.
      Usage lives on the step spans only, so summing a trace's usage gives the run total
      without counting it twice.
    - One `execute_tool {name}` child per tool the run used, kind INTERNAL (as the
      conventions ask); which step called it is unknown, so they are laid out evenly over
      the run and marked estimated. Names only: no arguments, no results.

    Status: ERROR with `error.type` on failed runs and on completed runs with a failing
    stop reason (see `_run_error_type`), and on failed steps; UNSET otherwise.
    """
    trace_id = trace_id_for(run)
    start = run.created_ns
    end = max(run.end_ns, start)  # a skewed clock must not make a negative span
    root_ctx = _context(trace_id, span_id_for("run", run.run_id))
    models = {step.model for step in run.steps if step.model}

    attributes: dict[str, AttributeValue] = {
        GEN_AI_OPERATION_NAME: GenAiOperationNameValues.INVOKE_AGENT.value,
        GEN_AI_PROVIDER_NAME: LETTA_PROVIDER,
        GEN_AI_AGENT_ID: run.agent_id,
        LETTA_RUN_ID: run.run_id,
        LETTA_RUN_STATUS: run.status,
        LETTA_RUN_STEP_COUNT: len(run.steps),
        LETTA_TIMING: TIMING_MEASURED,
    }
    _put(attributes, GEN_AI_AGENT_NAME, run.agent_name)
    _put(attributes, GEN_AI_CONVERSATION_ID, run.conversation_id)
    if len(models) == 1:  # the conventions want the model on the agent span only if single
        _put(attributes, GEN_AI_REQUEST_MODEL, next(iter(models)))
    _put(attributes, LETTA_RUN_STOP_REASON, run.stop_reason)
    _put(attributes, LETTA_RUN_BACKGROUND, run.background)
    _put(attributes, LETTA_RUN_TYPE, run.run_type)
    error_type = _run_error_type(run)
    _put(attributes, ERROR_TYPE, error_type)

    spans = [
        ReadableSpan(
            name=f"invoke_agent {run.agent_name or run.agent_id}",
            context=root_ctx,
            parent=None,
            resource=resource,
            attributes=attributes,
            kind=SpanKind.INTERNAL,
            status=_status(error_type),
            start_time=start,
            end_time=end,
            instrumentation_scope=SCOPE,
        )
    ]

    for index, step in enumerate(run.steps):
        s, e, timing = _step_times(step, (start, end), index, len(run.steps))
        step_attrs: dict[str, AttributeValue] = {
            GEN_AI_OPERATION_NAME: GenAiOperationNameValues.CHAT.value,
            GEN_AI_AGENT_ID: run.agent_id,
            GEN_AI_USAGE_INPUT_TOKENS: step.prompt_tokens,
            GEN_AI_USAGE_OUTPUT_TOKENS: step.completion_tokens,
            LETTA_RUN_ID: run.run_id,
            LETTA_STEP_ID: step.id,
            LETTA_STEP_INDEX: index,
            LETTA_TIMING: timing,
        }
        _put(step_attrs, GEN_AI_PROVIDER_NAME, provider_name(step))
        _put(step_attrs, GEN_AI_REQUEST_MODEL, step.model)
        _put(step_attrs, GEN_AI_AGENT_NAME, run.agent_name)
        _put(step_attrs, GEN_AI_CONVERSATION_ID, run.conversation_id)
        # Letta fills these per step only when > 0 (§2.6); cached_input_tokens is the one to
        # use (prompt_tokens_details double-reports the same number).
        _put(step_attrs, GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, step.cached_input_tokens)
        _put(step_attrs, GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, step.cache_write_tokens)
        _put(step_attrs, GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, step.reasoning_tokens)
        _put(step_attrs, LETTA_STEP_MODEL_HANDLE, step.model_handle)
        _put(step_attrs, LETTA_STEP_STATUS, step.status)
        _put(step_attrs, LETTA_STEP_STOP_REASON, step.stop_reason)
        step_error = _step_error_type(step)
        _put(step_attrs, ERROR_TYPE, step_error)
        spans.append(
            ReadableSpan(
                name=f"chat {step.model}" if step.model else "chat",
                context=_context(trace_id, span_id_for("step", run.run_id, step.id)),
                parent=root_ctx,
                resource=resource,
                attributes=step_attrs,
                kind=SpanKind.CLIENT,
                status=_status(step_error),
                start_time=s,
                end_time=e,
                instrumentation_scope=SCOPE,
            )
        )

    for index, tool in enumerate(run.tool_names):
        s, e = _slot(start, end, index, len(run.tool_names))
        tool_attrs: dict[str, AttributeValue] = {
            GEN_AI_OPERATION_NAME: GenAiOperationNameValues.EXECUTE_TOOL.value,
            GEN_AI_TOOL_NAME: tool,
            GEN_AI_AGENT_ID: run.agent_id,
            LETTA_RUN_ID: run.run_id,
            LETTA_TIMING: TIMING_ESTIMATED,
        }
        _put(tool_attrs, GEN_AI_AGENT_NAME, run.agent_name)
        spans.append(
            ReadableSpan(
                name=f"execute_tool {tool}",
                context=_context(trace_id, span_id_for("tool", run.run_id, str(index), tool)),
                parent=root_ctx,
                resource=resource,
                attributes=tool_attrs,
                kind=SpanKind.INTERNAL,
                start_time=s,
                end_time=e,
                instrumentation_scope=SCOPE,
            )
        )
    return spans


# --------------------------------------------------------------------------- passthrough

CONTENT_ATTRIBUTE_PREFIXES: Final = ("http.request.body.", "parameter.")
"""Dropped from passed-through spans: Letta copies the request body (message text, PII)
into `http.request.body.*` and a repr of every traced method argument (tool arguments,
agent state) into `parameter.*` (letta-runs-api.md §7.4)."""
CONTENT_ATTRIBUTE_KEYS: Final = frozenset({"request_data", "response_data"})
"""Dropped too: the full provider request and response JSON the LLM adapters attach."""
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
        moment: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000
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
    seconds = calendar.timegm(parsed.utctimetuple())
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        seconds -= sign * int(offset.total_seconds())
    nanos = int((fraction or "0").ljust(9, "0"))
    return seconds * NS_PER_S + nanos


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


def _trace_state(value: Any) -> TraceState:
    if not isinstance(value, str) or not value.strip():
        return TraceState()
    # from_header logs and returns an empty state for an invalid header: never raises.
    return TraceState.from_header([value])


def _links(row: Mapping[str, Any]) -> tuple[list[Link], int]:
    links: list[Link] = []
    dropped = 0
    for raw in _nested(row, "Links", ("TraceId", "SpanId", "TraceState", "Attributes")):
        trace_id = _parse_hex_id(raw.get("TraceId"), 32)
        span_id = _parse_hex_id(raw.get("SpanId"), 16)
        if trace_id is None or span_id is None:
            continue
        attributes, lost = _attributes(raw.get("Attributes"))
        dropped += lost
        context = SpanContext(
            trace_id,
            span_id,
            is_remote=False,
            trace_flags=_SAMPLED,
            trace_state=_trace_state(raw.get("TraceState")),
        )
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


class _Resources:
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
    resources: _Resources,
    scopes: dict[tuple[str, str], InstrumentationScope],
) -> tuple[ReadableSpan, int]:
    if not isinstance(row, Mapping):
        raise _MalformedRow(f"row of type {type(row).__name__}")
    trace_id = _parse_hex_id(row.get("TraceId"), 32)
    span_id = _parse_hex_id(row.get("SpanId"), 16)
    if trace_id is None or span_id is None:
        raise _MalformedRow("missing or invalid TraceId/SpanId")
    parent_raw = row.get("ParentSpanId")
    parent: SpanContext | None = None
    if parent_raw not in (None, ""):
        parent_id = _parse_hex_id(parent_raw, 16)
        if parent_id is None:
            raise _MalformedRow(f"invalid ParentSpanId {parent_raw!r}")
        # Kept even when that span is not among the rows (Letta's UI filter drops the
        # intermediate spans, §7.2): the backend shows the span under a missing parent,
        # which is the truth, rather than promoting it to a fake root.
        parent = _context(trace_id, parent_id)
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
    context = SpanContext(
        trace_id,
        span_id,
        is_remote=False,
        trace_flags=_SAMPLED,
        trace_state=_trace_state(row.get("TraceState")),
    )
    span = ReadableSpan(
        name=name,
        context=context,
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
    resources = _Resources(resource)
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


def spans_from_trace_rows(rows: list[dict[str, Any]], resource: Resource) -> list[ReadableSpan]:
    """`convert_trace_rows` for callers that need only the spans; skips are logged."""
    result = convert_trace_rows(rows, resource)
    if result.skipped:
        log.warning("skipped %d of %d malformed trace rows", result.skipped, len(rows))
    return result.spans


def ttft_seconds_from_rows(rows: list[dict[str, Any]]) -> float | None:
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
