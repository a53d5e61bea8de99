"""One finished run's trace, ready for the span outbox: passed through or built.

`/v1/runs/{id}/trace` rows (the server's own spans) are converted as soon as they are
fetched, so the rows, which can hold message text, are never kept. When the server has
no ClickHouse, or answers `[]`, the trace is built from what the exporter knows of the
run. Either way the result is a list of JSON-ready span dicts (`exporter.traces.codec`)
plus the trace id the duration and TTFT exemplars point at.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk.resources import Resource

from exporter.core.runs.run_info import FetchedTrace, RunInfo
from exporter.traces.build import build_run_spans
from exporter.traces.codec import span_to_dict
from exporter.traces.ids import trace_id_of
from exporter.traces.passthrough import convert_trace_rows, ttft_seconds_from_rows
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)


class RunTracer:
    """Turns trace rows or a RunInfo into stored spans, under the exporter's resource."""

    def __init__(self, resource: Resource) -> None:
        self._resource = resource

    def from_rows(self, run_id: str, rows: list[Any]) -> FetchedTrace:
        """Convert `/trace` rows; malformed rows are skipped (and logged), never fatal."""
        result = convert_trace_rows(rows, self._resource)
        if result.skipped:
            log.warning("run %s: skipped %d malformed /trace rows", run_id, result.skipped)
        ttft = ttft_seconds_from_rows(rows)
        trace_id = f"{trace_id_of(result.spans[0]):032x}" if result.spans else None
        return FetchedTrace(
            spans=[span_to_dict(span) for span in result.spans],
            trace_id=trace_id,
            ttft_ns=round(ttft * NS_PER_S) if ttft is not None else None,
            skipped_rows=result.skipped,
        )

    def build(self, info: RunInfo) -> tuple[list[dict[str, Any]], str]:
        """The built trace of a run (root, steps, tools) and its trace id."""
        spans = build_run_spans(info, self._resource)
        return [span_to_dict(span) for span in spans], f"{trace_id_of(spans[0]):032x}"
