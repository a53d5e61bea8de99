"""The state file's row format of a run record (field order and keys are the schema:
a file written by an earlier release must keep loading)."""

from __future__ import annotations

from typing import Any

from exporter.core.runs.record import Enrichment, Phase, RunRecord
from exporter.core.runs.run_info import FetchedTrace


def record_to_row(record: RunRecord) -> list[Any]:
    """Compact persisted form (the `data` column of `runs`)."""
    row = [
        record.agent_id,
        record.phase.value,
        record.status,
        record.stop_reason,
        record.completed_ns,
        record.duration_ns,
        record.ttft_ns,
        int(record.callback),
        record.callback_code,
        int(record.callback_error),
        record.terminal_seen_ns,
        record.last_seen_ns,
        enrichment_to_json(record.enrich) if record.enrich is not None else None,
        record.background,
        record.conversation_id,
        record.run_type,
        record.error_type,
    ]
    if record.open_with_stop_reason:
        # Written only when set, so every other row keeps the previous release's bytes.
        row.append(1)
    return row


def record_from_row(run_id: str, created_ns: int, row: list[Any]) -> RunRecord:
    """Inverse of record_to_row; rows of older releases lack the trailing fields."""
    return RunRecord(
        id=run_id,
        created_ns=created_ns,
        agent_id=row[0],
        phase=Phase(row[1]),
        status=row[2],
        stop_reason=row[3],
        completed_ns=row[4],
        duration_ns=row[5],
        ttft_ns=row[6],
        callback=bool(row[7]),
        callback_code=row[8],
        callback_error=bool(row[9]),
        terminal_seen_ns=row[10],
        last_seen_ns=row[11],
        enrich=enrichment_from_json(row[12]) if len(row) > 12 and row[12] else None,
        background=row[13] if len(row) > 13 else None,
        conversation_id=row[14] if len(row) > 14 else None,
        run_type=row[15] if len(row) > 15 else None,
        error_type=row[16] if len(row) > 16 else None,
        open_with_stop_reason=bool(row[17]) if len(row) > 17 else False,
    )


def enrichment_to_json(enrich: Enrichment) -> dict[str, Any]:
    """Persisted form of a pending enrichment."""
    return {
        "pending": enrich.pending,
        "attempts": enrich.attempts,
        "next_try_ns": enrich.next_try_ns,
        "failed": enrich.failed,
        "usage": enrich.usage,
        "tokens": enrich.tokens,
        "steps": enrich.steps,
        "step_ids": enrich.step_ids,
        "num_steps": enrich.num_steps,
        "tool_ids": enrich.tool_ids,
        "tool_calls": enrich.tool_calls,
        "step_seconds": enrich.step_seconds,
        "span_steps": enrich.span_steps,
        "step_error": enrich.step_error,
        "trace": [enrich.trace.spans, enrich.trace.trace_id, enrich.trace.ttft_ns]
        if enrich.trace is not None
        else None,
    }


def enrichment_from_json(data: dict[str, Any]) -> Enrichment:
    """Inverse of enrichment_to_json."""
    usage = data.get("usage")
    return Enrichment(
        pending=list(data["pending"]),
        attempts=int(data.get("attempts", 0)),
        next_try_ns=int(data.get("next_try_ns", 0)),
        failed=list(data.get("failed", [])),
        usage=(int(usage[0]), int(usage[1])) if usage else None,
        tokens=data.get("tokens"),
        steps=data.get("steps"),
        step_ids=[(str(a), str(b)) for a, b in data["step_ids"]]
        if data.get("step_ids") is not None
        else None,
        num_steps=data.get("num_steps"),
        tool_ids=data.get("tool_ids"),
        tool_calls=data.get("tool_calls"),
        step_seconds=[(str(a), float(b)) for a, b in data["step_seconds"]]
        if data.get("step_seconds") is not None
        else None,
        span_steps=data.get("span_steps"),
        step_error=data.get("step_error"),
        trace=FetchedTrace(trace[0], trace[1], trace[2], 0)
        if (trace := data.get("trace")) is not None
        else None,
    )
