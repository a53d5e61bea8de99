"""Runs to build spans from (captured and hand-made), and what the span tests read of
the spans."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from exporter.core.counting.counter import run_info_of
from exporter.core.runs.record import Phase, RunRecord
from exporter.core.runs.run_info import RunInfo, StepInfo
from exporter.letta.models import Run, Step
from tests.conftest import load_fixture

RESOURCE = Resource({"service.name": "letta-exporter", "service.namespace": "agents"})


def ctx(span: ReadableSpan) -> tuple[int, int]:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id, context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


ROWS = Path(__file__).parent / "fixtures" / "trace_rows"
MS = 1_000_000


def rows(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((ROWS / name).read_text())["rows"]
    return data


def run_info(scenario: str, *, agent_name: str | None = None, **changes: Any) -> RunInfo:
    """A captured run's RunInfo as counting builds it: from the run's record, ended where
    the duration metric ends it."""
    run = Run.model_validate(load_fixture(f"runs/{scenario}/run.json"))
    metrics = load_fixture(f"runs/{scenario}/metrics.json")
    steps = tuple(
        StepInfo.from_step(Step.model_validate(s))
        for s in load_fixture(f"runs/{scenario}/steps.json")
    )
    record = RunRecord(
        id=run.id,
        agent_id=run.agent_id,
        created_ns=run.created_ns,
        phase=Phase.DONE,
        status=run.status,
    )
    record.absorb(run)
    record.duration_ns = metrics["run_ns"]
    info = run_info_of(record, steps=steps, tool_names=tuple(changes.pop("tool_names", ())))
    return replace(info, agent_name=agent_name, **changes)


def step(n: int, **fields: Any) -> StepInfo:
    data: dict[str, Any] = {
        "id": f"step-{n:08d}-0000-4000-8000-000000000000",
        "model": "gpt-4o-mini",
        "model_handle": "openai/gpt-4o-mini",
        "provider_name": "openai",
        "prompt_tokens": 1000 + n,
        "completion_tokens": 50 + n,
        "total_tokens": 1050 + 2 * n,
        "cached_input_tokens": None,
        "cache_write_tokens": None,
        "reasoning_tokens": None,
        "status": "success",
        "stop_reason": None,
        "trace_id": None,
        "error_type": None,
    }
    data.update(fields)
    return StepInfo(**data)


T0 = 1_795_435_250_000_000_000


def rich_run(**fields: Any) -> RunInfo:
    data: dict[str, Any] = {
        "run_id": "run-11111111-2222-4333-8444-555555555555",
        "agent_id": "agent-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        "agent_name": "support-bot",
        "status": "completed",
        "stop_reason": "end_turn",
        "background": True,
        "conversation_id": "conv-123",
        "run_type": "send_conversation_message",
        "created_ns": T0,
        "end_ns": T0 + 3_000 * MS,
        "error_type": None,
        "steps": (
            step(1, cached_input_tokens=800, cache_write_tokens=120),
            step(2, reasoning_tokens=33),
            step(3, stop_reason="end_turn"),
        ),
        "tool_names": ("conversation_search", "send_message"),
    }
    data.update(fields)
    return RunInfo(**data)
