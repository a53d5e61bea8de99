"""Finished Letta runs as OpenTelemetry spans, built from what the runs API says of them.

A root `invoke_agent {agent}` span covers the run exactly as the duration metric saw it,
with one `chat {model}` child per step and one `execute_tool {tool}` child per tool the
run used. Ids are deterministic (re-emitting a run yields the same spans) and the trace
id is Letta's own when a step carries one, so the spans join the server's native trace.

Spans are constructed directly, not through a Tracer: a Tracer would pick its own ids and
clock, and here both must be exact. Built spans carry counts, names and ids only, never
message content. Attribute names come from `exporter.traces.semconv`.
"""

from __future__ import annotations

import hashlib
from typing import Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
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
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE, ErrorTypeValues
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from exporter.core.runs.errors import (
    failure_error_type,
    normalise_error_type,
)
from exporter.core.runs.run_info import RunInfo, StepInfo
from exporter.letta.models import FAILED_STOP_REASONS
from exporter.traces.ids import parse_hex_id, span_context
from exporter.traces.semconv import (
    LETTA_PROVIDER,
    LETTA_RUN_BACKGROUND,
    LETTA_RUN_ID,
    LETTA_RUN_STATUS,
    LETTA_RUN_STEP_COUNT,
    LETTA_RUN_STOP_REASON,
    LETTA_RUN_TYPE,
    LETTA_STEP_ID,
    LETTA_STEP_INDEX,
    LETTA_STEP_MODEL_HANDLE,
    LETTA_STEP_STATUS,
    LETTA_STEP_STOP_REASON,
    LETTA_TIMING,
    SCOPE,
    TIMING_ESTIMATED,
    TIMING_MEASURED,
    WELL_KNOWN_PROVIDERS,
)

_OTHER_ERROR: Final = ErrorTypeValues.OTHER.value


# --------------------------------------------------------------------------- inputs


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


def trace_id_for(run: RunInfo) -> int:
    """The trace id of a run's built spans.

    The server's own trace id when a step carries a valid one (so the spans join Letta's
    native trace); otherwise the first 16 bytes of sha256("letta-run:" + run_id), so
    re-emitting the same run always lands in the same trace. Never 0.
    """
    for step in run.steps:
        server_id = parse_hex_id((step.trace_id or "").strip(), 32)
        if server_id is not None:
            return server_id
    return _digest_int("letta-run:" + run.run_id, 16)


def span_id_for(*parts: str) -> int:
    """A deterministic 64-bit span id from its parts (e.g. "step", run_id, step_id). Never 0.

    Parts are joined with a unit separator so ("a", "bc") and ("ab", "c") differ.
    """
    return _digest_int("letta-span:" + "\x1f".join(parts), 8)


# --------------------------------------------------------------------------- built spans


def _run_error_type(run: RunInfo) -> str | None:
    """`error.type` of a run, or None when it did not end in error.

    Failed runs are errors. So are *completed* runs whose stop reason Letta itself maps to
    `failed` (letta-runs-api.md §2.3, §5.2: e.g. completed + llm_api_error after some
    steps); the run's real status stays visible in `letta.run.status`. Cancelled runs are
    not errors: someone chose to stop them.
    """
    failed = run.status == "failed" or (
        run.status == "completed" and run.stop_reason in FAILED_STOP_REASONS
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


def _provider_name(step: StepInfo) -> str | None:
    """The step's `gen_ai.provider.name`: a well-known value when one applies."""
    if not step.provider_name:
        return None
    name = step.provider_name.strip().lower()
    return WELL_KNOWN_PROVIDERS.get(name, name)


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
    root = span_context(trace_id, span_id_for("run", run.run_id))
    spans = [_root_span(run, root, (start, end), resource)]
    for index, step in enumerate(run.steps):
        times = _step_times(step, (start, end), index, len(run.steps))
        spans.append(_step_span(run, step, index, root, times, resource))
    for index, tool in enumerate(run.tool_names):
        slot = _slot(start, end, index, len(run.tool_names))
        spans.append(_tool_span(run, tool, index, root, slot, resource))
    return spans


def _root_span(
    run: RunInfo, context: SpanContext, times: tuple[int, int], resource: Resource
) -> ReadableSpan:
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
    name = f"invoke_agent {run.agent_name or run.agent_id}"
    return _span(name, context, None, attributes, SpanKind.INTERNAL, times, resource, error_type)


def _step_span(
    run: RunInfo,
    step: StepInfo,
    index: int,
    root: SpanContext,
    times: tuple[int, int, str],
    resource: Resource,
) -> ReadableSpan:
    start, end, timing = times
    attributes: dict[str, AttributeValue] = {
        GEN_AI_OPERATION_NAME: GenAiOperationNameValues.CHAT.value,
        GEN_AI_AGENT_ID: run.agent_id,
        GEN_AI_USAGE_INPUT_TOKENS: step.prompt_tokens,
        GEN_AI_USAGE_OUTPUT_TOKENS: step.completion_tokens,
        LETTA_RUN_ID: run.run_id,
        LETTA_STEP_ID: step.id,
        LETTA_STEP_INDEX: index,
        LETTA_TIMING: timing,
    }
    _put(attributes, GEN_AI_PROVIDER_NAME, _provider_name(step))
    _put(attributes, GEN_AI_REQUEST_MODEL, step.model)
    _put(attributes, GEN_AI_AGENT_NAME, run.agent_name)
    _put(attributes, GEN_AI_CONVERSATION_ID, run.conversation_id)
    # Letta fills these per step only when > 0 (§2.6); cached_input_tokens is the one to
    # use (prompt_tokens_details double-reports the same number).
    _put(attributes, GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, step.cached_input_tokens)
    _put(attributes, GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, step.cache_write_tokens)
    _put(attributes, GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, step.reasoning_tokens)
    _put(attributes, LETTA_STEP_MODEL_HANDLE, step.model_handle)
    _put(attributes, LETTA_STEP_STATUS, step.status)
    _put(attributes, LETTA_STEP_STOP_REASON, step.stop_reason)
    error_type = _step_error_type(step)
    _put(attributes, ERROR_TYPE, error_type)
    name = f"chat {step.model}" if step.model else "chat"
    context = span_context(root.trace_id, span_id_for("step", run.run_id, step.id))
    return _span(
        name, context, root, attributes, SpanKind.CLIENT, (start, end), resource, error_type
    )


def _tool_span(
    run: RunInfo,
    tool: str,
    index: int,
    root: SpanContext,
    times: tuple[int, int],
    resource: Resource,
) -> ReadableSpan:
    attributes: dict[str, AttributeValue] = {
        GEN_AI_OPERATION_NAME: GenAiOperationNameValues.EXECUTE_TOOL.value,
        GEN_AI_TOOL_NAME: tool,
        GEN_AI_AGENT_ID: run.agent_id,
        LETTA_RUN_ID: run.run_id,
        LETTA_TIMING: TIMING_ESTIMATED,
    }
    _put(attributes, GEN_AI_AGENT_NAME, run.agent_name)
    context = span_context(root.trace_id, span_id_for("tool", run.run_id, str(index), tool))
    name = f"execute_tool {tool}"
    return _span(name, context, root, attributes, SpanKind.INTERNAL, times, resource)


def _span(
    name: str,
    context: SpanContext,
    parent: SpanContext | None,
    attributes: dict[str, AttributeValue],
    kind: SpanKind,
    times: tuple[int, int],
    resource: Resource,
    error_type: str | None = None,
) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=kind,
        status=_status(error_type),
        start_time=times[0],
        end_time=times[1],
        instrumentation_scope=SCOPE,
    )
