"""The enrichment queue: finished runs waiting for their details before they count.

Each endpoint's answer is stored on the run's `Enrichment`; when nothing is pending any
more the run is counted. Failures are retried with exponential backoff, then given up.
"""

from __future__ import annotations

from dataclasses import asdict

from exporter.core.book.lifecycle import RunBook
from exporter.core.labels import free_value
from exporter.core.runs.record import Phase, RunRecord
from exporter.core.runs.run_info import FetchedTrace, StepInfo
from exporter.letta.models import RunMetrics, Step, Usage
from exporter.series import catalogue as m
from exporter.units import NS_PER_S


class EnrichmentQueue:
    """Which runs to enrich next, and what each endpoint's answer means for the run."""

    def __init__(self, runs: RunBook, endpoints: tuple[str, ...]) -> None:
        self._runs = runs
        self._options = runs.options
        self.endpoints = endpoints
        """The enrichment endpoints asked for every finished run, in fetch order."""

    def due(self, now: int, limit: int) -> list[RunRecord]:
        """Runs whose next enrichment attempt is due, oldest attempt first."""
        due = [
            r
            for r in self._runs.records.values()
            if r.phase is Phase.ENRICHING and r.enrich is not None and r.enrich.next_try_ns <= now
        ]
        due.sort(key=lambda r: (r.enrich.next_try_ns if r.enrich else 0, r.created_ns))
        return due[:limit]

    def backlog(self) -> int:
        """Finished runs still waiting for enrichment."""
        return sum(1 for r in self._runs.records.values() if r.phase is Phase.ENRICHING)

    def completed_at(self, run_id: str) -> int | None:
        """When a run the exporter knows completed and wrote its last message, else None:
        not for a cancelled or failed run (a step may still be writing) nor one waiting
        for an approval (its thread goes on)."""
        record = self._runs.records.get(run_id)
        if record is None or record.status != "completed":
            return None
        if record.stop_reason == "requires_approval":
            return None
        return record.completed_ns

    def answered_usage(self, record: RunRecord, usage: Usage) -> None:
        """Store /usage totals."""
        assert record.enrich is not None
        record.enrich.usage = (usage.prompt_tokens, usage.completion_tokens)
        self._endpoint_done(record, "usage")

    def answered_steps(self, record: RunRecord, steps: list[Step]) -> None:
        """Store the step count, tokens by model and type, and step ids for timings."""
        enrich = record.enrich
        assert enrich is not None
        tokens: dict[str, dict[str, int]] = {}
        for step in steps:
            model = free_value(step.model or step.model_handle)
            by_type = tokens.setdefault(model, {})
            for kind, value in (
                ("input", step.prompt_tokens),
                ("output", step.completion_tokens),
                ("cached_input", step.cached_input_tokens),
                ("cache_write", step.cache_write_tokens),
                ("reasoning", step.reasoning_tokens),
            ):
                if value:
                    by_type[kind] = by_type.get(kind, 0) + value
        enrich.tokens = tokens
        enrich.steps = len(steps)
        if self._runs.counter.tracing:
            enrich.span_steps = [asdict(StepInfo.from_step(s)) for s in steps]
        if "step_timings" in enrich.pending:
            enrich.step_ids = [(s.id, free_value(s.model or s.model_handle)) for s in steps]
        enrich.step_error = next(
            (s.error_type for s in steps if s.status == "failed" and s.error_type), None
        )
        if "usage" in enrich.pending:
            enrich.pending.remove("usage")  # nothing it could add: not asked for
        self._endpoint_done(record, "steps")

    def answered_metrics(self, record: RunRecord, metrics: RunMetrics) -> None:
        """Store num_steps (capped at 50 by Letta) and the ids of the tools used."""
        assert record.enrich is not None
        record.enrich.num_steps = metrics.num_steps
        record.enrich.tool_ids = list(dict.fromkeys(metrics.tools_used or ()))
        self._endpoint_done(record, "metrics")

    def answered_tool_calls(self, record: RunRecord, calls: dict[str, int]) -> None:
        """Store the run's tool calls by name (from its messages) in place of /metrics."""
        assert record.enrich is not None
        record.enrich.tool_calls = dict(calls)
        self._endpoint_done(record, "metrics")

    def answered_step_timings(self, record: RunRecord, seconds: list[tuple[str, float]]) -> None:
        """Store (model, seconds) per step."""
        assert record.enrich is not None
        record.enrich.step_seconds = seconds
        self._endpoint_done(record, "step_timings")

    def answered_trace(self, record: RunRecord, trace: FetchedTrace | None) -> None:
        """Store the converted `/trace` spans; None (or no spans) means build the trace."""
        assert record.enrich is not None
        record.enrich.trace = trace
        self._endpoint_done(record, "trace")

    def skipped(self, record: RunRecord, endpoint: str) -> None:
        """Letta does not serve `endpoint`: count the run without it (not a failure)."""
        enrich = record.enrich
        assert enrich is not None
        if endpoint == "steps" and "step_timings" in enrich.pending:
            enrich.pending.remove("step_timings")  # they need the step ids
        self._endpoint_done(record, endpoint)

    def failed(self, record: RunRecord, endpoint: str, now: int, *, permanent: bool) -> None:
        """A fetch failed: retry later with backoff, or give the endpoint up for good."""
        enrich = record.enrich
        assert enrich is not None
        opts = self._options
        if not permanent and enrich.attempts + 1 < opts.enrich_max_attempts:
            enrich.attempts += 1
            backoff = opts.enrich_backoff_ns * 2 ** (enrich.attempts - 1)
            enrich.next_try_ns = now + min(backoff, 300 * NS_PER_S)
            self._runs.records.changed(record)
            return
        given_up = [endpoint]
        if endpoint == "steps" and "step_timings" in enrich.pending:
            given_up.append("step_timings")  # they need the step ids
        for name in given_up:
            self._runs.aggregates.inc(m.ENRICHMENT_FAILURES, (name,))
            enrich.failed.append(name)
            if name in enrich.pending:
                enrich.pending.remove(name)
        self._runs.records.changed(record)
        if not enrich.pending:
            self._runs.count(record)

    def defer(self, record: RunRecord, until: int) -> None:
        """Nothing to fetch before `until` (not a failed attempt)."""
        assert record.enrich is not None
        record.enrich.next_try_ns = until
        self._runs.records.changed(record)

    def trace_ready_ns(self, record: RunRecord) -> int:
        """When the server's spans of this run should all be readable from `/trace`."""
        end = record.completed_ns or record.terminal_seen_ns or record.created_ns
        return end + self._options.trace_delay_ns

    def _endpoint_done(self, record: RunRecord, endpoint: str) -> None:
        assert record.enrich is not None
        if endpoint in record.enrich.pending:
            record.enrich.pending.remove(endpoint)
        self._runs.records.changed(record)
        if not record.enrich.pending and record.phase is Phase.ENRICHING:
            self._runs.count(record)
