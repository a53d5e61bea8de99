"""What a trace is made of, as plain data: the core hands these to the trace builder and
receives fetched traces back, without knowing OpenTelemetry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.letta.models import Step


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One element of `GET /v1/runs/{id}/steps` (letta-runs-api.md §2.6).

    `start_ns` (epoch ns) and `duration_ns` are optional measured timings from
    `GET /v1/steps/{id}/metrics` (`step_start_ns`, `step_ns`); without both, the step's
    span is laid out evenly inside the run and marked `letta.timing = "estimated"`.
    """

    id: str
    model: str | None
    model_handle: str | None
    provider_name: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_input_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    status: str | None
    stop_reason: str | None
    trace_id: str | None
    error_type: str | None
    start_ns: int | None = None
    duration_ns: int | None = None

    @classmethod
    def from_step(
        cls, step: Step, *, start_ns: int | None = None, duration_ns: int | None = None
    ) -> StepInfo:
        """From the client's `Step` model (a null token count becomes 0)."""
        return cls(
            id=step.id,
            model=step.model,
            model_handle=step.model_handle,
            provider_name=step.provider_name,
            prompt_tokens=step.prompt_tokens or 0,
            completion_tokens=step.completion_tokens or 0,
            total_tokens=step.total_tokens or 0,
            cached_input_tokens=step.cached_input_tokens,
            cache_write_tokens=step.cache_write_tokens,
            reasoning_tokens=step.reasoning_tokens,
            status=step.status,
            stop_reason=step.stop_reason,
            trace_id=step.trace_id,
            error_type=step.error_type,
            start_ns=start_ns,
            duration_ns=duration_ns,
        )


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A finished run, as much as the exporter knows of it.

    `end_ns` is `created_ns` plus the duration the `letta_run_duration_seconds` sample
    used, so the root span's duration equals that sample. `steps` are in execution order
    (the client lists them with `order=asc`). `tool_names` are the distinct tools the run
    used (`/metrics` `tools_used`, resolved to names).
    """

    run_id: str
    agent_id: str
    agent_name: str | None
    status: str
    stop_reason: str | None
    background: bool | None
    conversation_id: str | None
    run_type: str | None
    created_ns: int
    end_ns: int
    error_type: str | None
    steps: tuple[StepInfo, ...] = ()
    tool_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchedTrace:
    """What `/trace` gave for one run: converted spans (maybe none) and the TTFT event."""

    spans: list[dict[str, Any]]
    trace_id: str | None
    ttft_ns: int | None
    skipped_rows: int


TraceBuilder = Callable[[RunInfo], tuple[list[dict[str, Any]], str]]
"""Builds a counted run's trace: its spans (JSON-ready dicts) and their trace id."""
