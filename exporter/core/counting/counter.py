"""The one place a finished run turns into counter and histogram samples.

Prices, label caps and the exemplar (the run's trace id) are applied here; the run's
trace, fetched or built by the injected builder, is queued for the span outbox so it
commits in the same transaction as the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from exporter.core.counting.pricing import PriceTable
from exporter.core.counting.tool_names import ToolNames
from exporter.core.labels import NONE, CappedLabel, enum_value, free_value
from exporter.core.runs.errors import failure_error_type
from exporter.core.runs.inconsistency import finished_kinds
from exporter.core.runs.record import (
    Enrichment,
    RunRecord,
    callback_result,
    path_labels,
    run_duration_seconds,
)
from exporter.core.runs.run_info import RunInfo, StepInfo, TraceBuilder
from exporter.letta.models import is_failure
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.units import NS_PER_S

# Letta has a few dozen error classes and three run types; the caps only guard against a
# server that puts something unbounded there.
ERROR_TYPE_LIMIT: Final = 50
RUN_TYPE_LIMIT: Final = 20


@dataclass(slots=True)
class CountLabels:
    """The capped labels of the run metrics."""

    agent: CappedLabel
    model: CappedLabel = field(default_factory=lambda: CappedLabel("model", 100))
    tool: CappedLabel = field(default_factory=lambda: CappedLabel("tool", 200))
    error_type: CappedLabel = field(
        default_factory=lambda: CappedLabel("error_type", ERROR_TYPE_LIMIT)
    )
    run_type: CappedLabel = field(default_factory=lambda: CappedLabel("run_type", RUN_TYPE_LIMIT))

    def take_changes(self) -> dict[str, list[str]]:
        """Values admitted since the last call, by label name (for the checkpoint)."""
        labels = (self.agent, self.model, self.tool, self.error_type, self.run_type)
        return {label.name: label.take_changes() for label in labels}


# Not frozen: a frozen dataclass's __init__ costs a setattr call per field, and a backfill
# builds one per historic run.
@dataclass(slots=True)
class RunSample:
    """What a finished run contributes to the run metrics (enrichment aside)."""

    agent_id: str
    status: str
    stop_reason: str | None
    duration_s: float | None
    ttft_ns: int | None
    callback: str | None
    path: tuple[str, str]
    error_type: str | None
    exemplar: str | None = None
    """The run's trace id, attached to its duration and TTFT samples."""
    inconsistent: tuple[str, ...] = ()
    """Impossible states the run was found in when counted (`exporter.core.runs.inconsistency`)."""


class RunCounter:
    """Turns finished runs into samples of the aggregates."""

    def __init__(
        self,
        aggregates: Aggregates,
        labels: CountLabels,
        tool_names: ToolNames,
        *,
        prices: PriceTable | None = None,
        build_trace: TraceBuilder | None = None,
    ) -> None:
        self.aggregates = aggregates
        self.labels = labels
        self.tool_names = tool_names
        self.prices = prices
        self._build_trace = build_trace
        self._new_traces: list[tuple[str, list[dict[str, Any]]]] = []

    @property
    def tracing(self) -> bool:
        """Whether each counted run gets a trace."""
        return self._build_trace is not None

    def count(self, record: RunRecord) -> None:
        """Count a settled (and enriched) run, and queue its trace."""
        ttft_ns = record.ttft_ns
        trace_id: str | None = None
        if self._build_trace is not None:
            fetched = record.enrich.trace if record.enrich is not None else None
            if ttft_ns is None and fetched is not None:
                # Letta leaves ttft_ns null (always, in 0.16.8): the trace event has it.
                ttft_ns = fetched.ttft_ns
            trace_id = self._trace(record, self._build_trace)
        inconsistent = finished_kinds(
            record.status, record.stop_reason, record.completed_ns is not None
        )
        self.count_sample(
            RunSample(
                agent_id=record.agent_id,
                status=record.status,
                stop_reason=record.stop_reason,
                duration_s=run_duration_seconds(record),
                ttft_ns=ttft_ns,
                callback=callback_result(
                    record.callback, record.callback_code, record.callback_error
                ),
                path=path_labels(record.run_type, record.background),
                error_type=failure_error_type(
                    record.enrich.step_error if record.enrich is not None else None,
                    record.error_type,
                ),
                exemplar=trace_id,
                inconsistent=tuple(inconsistent),
            )
        )
        if record.enrich is not None:
            self._count_enrichment(self.labels.agent(record.agent_id), record.enrich)

    def count_sample(self, sample: RunSample) -> None:
        """Runs finished and failed, by path, duration, TTFT and callback result."""
        agg, labels = self.aggregates, self.labels
        agent = labels.agent(sample.agent_id)
        status = enum_value(sample.status)
        agg.inc(m.RUNS_FINISHED, (agent, status, enum_value(sample.stop_reason)))
        if is_failure(sample.status, sample.stop_reason):
            agg.inc(m.RUNS_FAILED, (agent, labels.error_type(sample.error_type or NONE)))
        run_type, background = sample.path
        agg.inc(m.RUNS_FINISHED_BY_PATH, (labels.run_type(run_type), background))
        if sample.duration_s is not None and sample.duration_s >= 0:
            agg.add(m.RUN_DURATION, (agent, status), sample.duration_s, sample.exemplar)
        if sample.ttft_ns is not None and sample.ttft_ns >= 0:
            agg.add(m.RUN_TTFT, (agent,), sample.ttft_ns / NS_PER_S, sample.exemplar)
        if sample.callback is not None:
            agg.inc(m.RUN_CALLBACKS, (agent, sample.callback))
        for kind in sample.inconsistent:
            agg.inc(m.RUNS_INCONSISTENT, (agent, kind))

    def take_changes(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Spans of runs counted since the last call, for the outbox (same commit)."""
        new, self._new_traces = self._new_traces, []
        return new

    def _count_enrichment(self, agent: str, enrich: Enrichment) -> None:
        """Tokens, steps, tools, cost and step timings of one run (what was fetched)."""
        agg, labels = self.aggregates, self.labels
        tokens = enrich.tokens
        if tokens is None and enrich.usage is not None:
            # No step detail: /usage has the totals but neither model nor cache split.
            tokens = {"unknown": {"input": enrich.usage[0], "output": enrich.usage[1]}}
        for model, by_type in (tokens or {}).items():
            model_label = labels.model(model)
            for kind, value in by_type.items():
                if value:
                    agg.inc(m.RUN_TOKENS, (agent, model_label, kind), value)
            if self.prices is not None:
                cost = self.prices.cost(model, by_type)
                if cost is not None:
                    agg.inc(m.RUN_COST, (agent, model_label), cost)
        steps = enrich.steps if enrich.steps is not None else enrich.num_steps
        if steps is not None:
            agg.add(m.RUN_STEPS, (agent,), steps)
        for tool_id in enrich.tool_ids or ():
            name = free_value(self.tool_names.get(tool_id))
            agg.inc(m.RUN_TOOL_CALLS, (agent, labels.tool(name)))
        for name, calls in (enrich.tool_calls or {}).items():
            tool = labels.tool(free_value(name))
            agg.inc(m.RUN_TOOL_CALLS, (agent, tool))
            agg.inc(m.RUN_TOOL_INVOCATIONS, (agent, tool), calls)
        for model, seconds in enrich.step_seconds or ():
            agg.add(m.STEP_DURATION, (agent, labels.model(model)), seconds)

    def _trace(self, record: RunRecord, build: TraceBuilder) -> str:
        """Queue the run's spans for the outbox; returns their trace id."""
        enrich = record.enrich
        fetched = enrich.trace if enrich is not None else None
        if fetched is not None and fetched.spans and fetched.trace_id is not None:
            self._new_traces.append((record.id, fetched.spans))
            return fetched.trace_id
        spans_steps = (enrich.span_steps if enrich else None) or ()
        tool_ids = (enrich.tool_ids if enrich else None) or ()
        called = (enrich.tool_calls if enrich else None) or {}
        names = [self.tool_names.get(t) for t in tool_ids] + list(called)
        info = run_info_of(
            record,
            steps=tuple(_step_info(s) for s in spans_steps),
            tool_names=tuple(dict.fromkeys(names)),
        )
        spans, trace_id = build(info)
        self._new_traces.append((record.id, spans))
        return trace_id


def run_info_of(
    record: RunRecord, *, steps: tuple[StepInfo, ...], tool_names: tuple[str, ...]
) -> RunInfo:
    """What the span builder needs of a counted run."""
    # Integer ns from the same source as the duration sample, so the root span lasts
    # exactly what the run put into letta_run_duration_seconds.
    if record.duration_ns is not None and record.duration_ns >= 0:
        end_ns = record.created_ns + record.duration_ns
    elif record.completed_ns is not None and record.completed_ns >= record.created_ns:
        end_ns = record.completed_ns
    else:
        end_ns = record.created_ns
    return RunInfo(
        run_id=record.id,
        agent_id=record.agent_id,
        agent_name=None,  # the runs API carries no agent name
        status=record.status,
        stop_reason=record.stop_reason,
        background=record.background,
        conversation_id=record.conversation_id,
        run_type=record.run_type,
        created_ns=record.created_ns,
        end_ns=end_ns,
        error_type=record.error_type,
        steps=steps,
        tool_names=tool_names,
    )


_STEP_FIELDS: Final = frozenset(StepInfo.__dataclass_fields__)


def _step_info(data: dict[str, Any]) -> StepInfo:
    """A step saved with the pending enrichment, back as a StepInfo."""
    # Fields a newer or older exporter saved that this one does not know are ignored, so
    # an upgrade while runs wait for enrichment cannot break counting them.
    known: dict[str, Any] = dict.fromkeys(_STEP_FIELDS)
    known.update({"id": "", "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    known.update((k, v) for k, v in data.items() if k in _STEP_FIELDS)
    return StepInfo(**known)
