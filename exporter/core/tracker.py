"""What the exporter knows about runs, and the rules that count each finished run once.

Pure state machine, no I/O and no clock of its own: every method takes `now` (epoch ns
of the exporter's clock). The poller feeds it observations; the checkpoint persists the
records and aggregates it marks dirty.

Life of a run record:

    (unseen) ──open──────────► OPEN ──terminal──► SETTLING ──grace over──► DONE (counted)
    (unseen) ──terminal──────► SETTLING                        404 ──► counted at once
    (unseen) ──terminal, first start──► BASELINE (history, never counted)
    OPEN ──404──► removed, letta_runs_deleted_total
    OPEN ──older than forget horizon / over capacity──► removed, counted as dropped

DONE and BASELINE records are kept only while a later scan could list the run again
(created_at within the lookback window), which is what makes the re-scan idempotent.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final

from exporter.core.approvals import (
    APPROVAL_STOP_REASON,
    ApprovalBook,
    refused_for_pending_approval,
)
from exporter.core.labels import NONE, CappedLabel, enum_value, free_value
from exporter.core.pricing import PriceTable
from exporter.core.run_errors import error_type_from_metadata, failure_error_type
from exporter.core.walk import Walk
from exporter.letta.models import Run, RunMetrics, Step, Usage, is_failure, to_epoch_ns
from exporter.metrics import catalogue as m
from exporter.metrics.aggregates import Aggregates
from exporter.traces.build import RunInfo, StepInfo
from exporter.traces.run_tracer import FetchedTrace, RunTracer
from exporter.units import NS_PER_S

# Letta has a few dozen error classes and three run types; the caps only guard against a
# server that puts something unbounded there.
ERROR_TYPE_LIMIT: Final = 50
RUN_TYPE_LIMIT: Final = 20
# Runs that ended in these statuses answer any approval waiting on their thread (failed
# ones may be refusals, open ones are still working: the approval book sorts those out).
_ANSWERING_STATUSES: Final = frozenset({"completed", "cancelled"})
# A run that completed this long ago has had every late write (duration, callback) land.
SETTLED_AGE_NS: Final = 600 * NS_PER_S


class Phase(StrEnum):
    OPEN = "open"
    SETTLING = "settling"
    ENRICHING = "enriching"
    DONE = "done"
    BASELINE = "baseline"


ENDPOINTS: Final = ("steps", "usage", "metrics", "step_timings", "trace")
"""Enrichment endpoints in fetch order. /usage only matters when /steps is off or given
up (the steps hold every token, /usage the newest 50 steps' totals), so it comes after
/steps and is skipped when they answered; step timings need the step ids from /steps;
the trace comes last because it must wait for the server's spans to settle."""


@dataclass(slots=True)
class Enrichment:
    """What a finished run still needs fetched, and what was fetched, before it counts."""

    pending: list[str]
    attempts: int = 0
    next_try_ns: int = 0
    failed: list[str] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    tokens: dict[str, dict[str, int]] | None = None
    steps: int | None = None
    step_ids: list[tuple[str, str]] | None = None
    num_steps: int | None = None
    tool_ids: list[str] | None = None
    tool_calls: dict[str, int] | None = None
    """Calls per tool name, from the run's messages (where /metrics is not served)."""
    step_seconds: list[tuple[str, float]] | None = None
    span_steps: list[dict[str, Any]] | None = None
    trace: FetchedTrace | None = None
    step_error: str | None = None
    """error_type of the run's first failed step, the most specific cause of a failure."""

    def to_json(self) -> dict[str, Any]:
        """Persistable form."""
        return {
            "pending": self.pending,
            "attempts": self.attempts,
            "next_try_ns": self.next_try_ns,
            "failed": self.failed,
            "usage": self.usage,
            "tokens": self.tokens,
            "steps": self.steps,
            "step_ids": self.step_ids,
            "num_steps": self.num_steps,
            "tool_ids": self.tool_ids,
            "tool_calls": self.tool_calls,
            "step_seconds": self.step_seconds,
            "span_steps": self.span_steps,
            "step_error": self.step_error,
            "trace": [self.trace.spans, self.trace.trace_id, self.trace.ttft_ns]
            if self.trace is not None
            else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Enrichment:
        """Inverse of to_json."""
        usage = data.get("usage")
        return cls(
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


@dataclass(slots=True)
class RunRecord:
    """The exporter's view of one run. Times are epoch ns."""

    id: str
    agent_id: str
    created_ns: int
    phase: Phase
    status: str
    stop_reason: str | None = None
    completed_ns: int | None = None
    duration_ns: int | None = None
    ttft_ns: int | None = None
    callback: bool = False
    callback_code: int | None = None
    callback_error: bool = False
    terminal_seen_ns: int | None = None
    last_seen_ns: int = 0
    next_refresh_ns: int = 0
    enrich: Enrichment | None = None
    # Kept for the run's built trace (gen_ai.conversation.id, letta.run.*, error.type).
    background: bool | None = None
    conversation_id: str | None = None
    run_type: str | None = None
    error_type: str | None = None

    def to_row(self) -> list[Any]:
        """Compact persisted form (field order is part of the checkpoint schema)."""
        return [
            self.agent_id,
            self.phase.value,
            self.status,
            self.stop_reason,
            self.completed_ns,
            self.duration_ns,
            self.ttft_ns,
            int(self.callback),
            self.callback_code,
            int(self.callback_error),
            self.terminal_seen_ns,
            self.last_seen_ns,
            self.enrich.to_json() if self.enrich is not None else None,
            self.background,
            self.conversation_id,
            self.run_type,
            self.error_type,
        ]

    @classmethod
    def from_row(cls, run_id: str, created_ns: int, row: list[Any]) -> RunRecord:
        """Inverse of to_row."""
        return cls(
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
            enrich=Enrichment.from_json(row[12]) if len(row) > 12 and row[12] else None,
            background=row[13] if len(row) > 13 else None,
            conversation_id=row[14] if len(row) > 14 else None,
            run_type=row[15] if len(row) > 15 else None,
            error_type=row[16] if len(row) > 16 else None,
        )

    def absorb(self, run: Run) -> None:
        """Take the newer observation's fields; a null never erases a known duration."""
        self.status = run.status
        self.stop_reason = run.stop_reason
        if run.completed_at is not None:
            self.completed_ns = to_epoch_ns(run.completed_at)
        if run.total_duration_ns is not None:
            self.duration_ns = run.total_duration_ns
        if run.ttft_ns is not None:
            self.ttft_ns = run.ttft_ns
        self.callback = run.callback_url is not None
        if run.callback_status_code is not None:
            self.callback_code = run.callback_status_code
        if run.callback_error:
            self.callback_error = True
        self.background = run.background
        self.conversation_id = run.conversation_id
        metadata = run.metadata
        if isinstance(metadata, dict):
            self.run_type = _run_type(metadata)
            self.error_type = error_type_from_metadata(metadata)

    def fingerprint(self) -> tuple[Any, ...]:
        """The fields whose change is worth a checkpoint write."""
        return (
            self.phase,
            self.status,
            self.stop_reason,
            self.completed_ns,
            self.duration_ns,
            self.ttft_ns,
            self.callback,
            self.callback_code,
            self.callback_error,
        )

    @property
    def callback_recorded(self) -> bool:
        return self.callback_code is not None or self.callback_error


@dataclass(frozen=True, slots=True)
class TrackerOptions:
    """Timing and bounds, all in nanoseconds or counts."""

    lookback_ns: int = 300 * NS_PER_S
    grace_ns: int = 5 * NS_PER_S
    callback_wait_ns: int = 30 * NS_PER_S
    stale_after_ns: int = 3600 * NS_PER_S
    stale_refresh_ns: int = 300 * NS_PER_S
    forget_after_ns: int = 7 * 86400 * NS_PER_S
    max_open_runs: int = 100_000
    enrich: tuple[str, ...] = ()
    enrich_max_attempts: int = 5
    enrich_backoff_ns: int = 2 * NS_PER_S
    trace_delay_ns: int = 20 * NS_PER_S


@dataclass(frozen=True, slots=True)
class ApprovalWaitView:
    """One pending approval as the gauges see it."""

    agent: str
    since_ns: int


@dataclass(frozen=True, slots=True)
class OpenRunView:
    """One open run as the gauges see it."""

    agent: str
    status: str
    created_ns: int
    stale: bool


class Tracker:
    """Holds run records, the scan position and the aggregates; applies the counting rules."""

    def __init__(
        self,
        options: TrackerOptions,
        aggregates: Aggregates,
        agent_label: CappedLabel,
        *,
        agent_allowed: Callable[[str], bool] = lambda agent_id: True,
        model_label: CappedLabel | None = None,
        tool_label: CappedLabel | None = None,
        error_type_label: CappedLabel | None = None,
        run_type_label: CappedLabel | None = None,
        prices: PriceTable | None = None,
        tool_names: dict[str, str] | None = None,
        tracer: RunTracer | None = None,
    ) -> None:
        self.options = options
        self.aggregates = aggregates
        self.agent_label = agent_label
        self.model_label = model_label or CappedLabel("model", 100)
        self.tool_label = tool_label or CappedLabel("tool", 200)
        self.error_type_label = error_type_label or CappedLabel("error_type", ERROR_TYPE_LIMIT)
        self.run_type_label = run_type_label or CappedLabel("run_type", RUN_TYPE_LIMIT)
        self.prices = prices
        self.tool_names: dict[str, str] = dict(tool_names or {})
        self._new_tool_names: dict[str, str] = {}
        self._allowed = agent_allowed
        self.tracer = tracer
        self._endpoints = [
            e for e in ENDPOINTS if e in options.enrich or (e == "trace" and tracer is not None)
        ]
        self._new_traces: list[tuple[str, list[dict[str, Any]]]] = []
        self.records: dict[str, RunRecord] = {}
        self.hwm_ns: int | None = None
        self.scan: Walk | None = None
        # Every run created before this had been listed (start of the last walk that
        # reached its floor); None before one did, or in a state file of 0.1.0.
        self.listed_until_ns: int | None = None
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._late_mark: int | None = None
        self.approvals = ApprovalBook()
        # False until pending approvals older than the first scan have been looked for
        # (a first start, or a state file from before approvals were kept).
        self.approvals_seeded = False

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The enrichment endpoints asked for every finished run, in fetch order."""
        return tuple(self._endpoints)

    def begin_cycle(self) -> None:
        """Mark where this cycle starts: a new run older than what earlier cycles saw
        from the head is a late commit (only known when no walk is still pending)."""
        self._late_mark = self.hwm_ns if self.scan is None else None

    # ---- observations -------------------------------------------------------------

    def observe(
        self,
        run: Run,
        now: int,
        *,
        count: bool = True,
        follow_old: bool = False,
        floor: int | None = None,
    ) -> None:
        """Apply one observation of a run from any endpoint.

        `count=False` marks terminal runs never seen before as history (first start).
        `follow_old` admits unknown open runs below the floor (active listing, GET).
        `floor` is the creation time below which an unknown run may be one counted and
        forgotten long ago, so it is ignored; it defaults to the dedupe floor.
        """
        if not self._allowed(run.agent_id):
            return
        self._note_approval(run, run.created_ns, now, self.dedupe_floor_ns())
        record = self.records.get(run.id)
        if record is None:
            if floor is None:
                floor = self.dedupe_floor_ns()
            self._first_sight(run, now, count=count, follow_old=follow_old, floor=floor)
            return
        record.last_seen_ns = now
        if record.phase is Phase.BASELINE:
            return
        if record.phase is Phase.DONE:
            if (run.status, run.stop_reason) != (record.status, record.stop_reason):
                # Counted already; say so rather than count the run twice.
                self.aggregates.inc(m.CHANGED_AFTER_COUNT)
                record.status, record.stop_reason = run.status, run.stop_reason
                self._dirty.add(run.id)
            return
        before = record.fingerprint()
        record.absorb(run)
        if record.phase is Phase.OPEN and run.is_terminal:
            record.phase = Phase.SETTLING
            record.terminal_seen_ns = now
        if record.fingerprint() != before:
            # last_seen alone is not persisted eagerly: rewriting every open run each
            # cycle would cost a write per run per cycle for no gain after a restart.
            self._dirty.add(run.id)

    def _first_sight(
        self, run: Run, now: int, *, count: bool, follow_old: bool, floor: int
    ) -> None:
        created = run.created_ns
        terminal = run.is_terminal
        if created < floor and not (follow_old and not terminal):
            return  # at or past the window: could be a run counted and pruned long ago
        if not terminal and now - created > self.options.forget_after_ns:
            return
        if self._late_mark is not None and created < self._late_mark:
            self.aggregates.inc(m.LATE_RUNS)
        if self.hwm_ns is None or created > self.hwm_ns:
            self.hwm_ns = created
        if terminal and not count:
            phase = Phase.BASELINE
        elif terminal:
            phase = Phase.SETTLING
        else:
            phase = Phase.OPEN
        self._adopt(run, now, created, phase)

    def observe_backfill(self, run: Run, now: int, created: int | None = None) -> None:
        """A run from a walk region no scan has visited: new by construction, no dedupe.

        `created` is the run's created_ns when the caller has it already (hot path).
        """
        if not self._allowed(run.agent_id) or run.id in self.records:
            self.observe(run, now)
            return
        if created is None:
            created = run.created_ns
        self._note_approval(run, created, now, 0)  # a region no scan has visited
        if self.hwm_ns is None or created > self.hwm_ns:
            self.hwm_ns = created
        terminal = run.is_terminal
        completed_at = run.completed_at
        fast = terminal and not self._endpoints and completed_at is not None
        if fast and completed_at is not None and created < self.dedupe_floor_ns():
            duration = run.total_duration_ns
            # created + run_ns is when it ended: cheaper than converting completed_at.
            completed = created + duration if duration is not None else None
            if completed is None or now - completed <= SETTLED_AGE_NS:
                completed = to_epoch_ns(completed_at)
            if now - completed > SETTLED_AGE_NS:
                # Old history (the bulk of a backfill): count it without building a record,
                # since no later scan can list it again.
                self._count_values(
                    run.agent_id,
                    run.status,
                    run.stop_reason,
                    duration / NS_PER_S
                    if duration is not None
                    else (completed - created) / NS_PER_S,
                    run.ttft_ns,
                    _callback_result(
                        run.callback_url is not None,
                        run.callback_status_code,
                        bool(run.callback_error),
                    ),
                    path_labels(_run_type(run.metadata), run.background),
                    error_type=error_type_from_metadata(run.metadata),
                )
                return
        if not terminal and now - created > self.options.forget_after_ns:
            return
        self._adopt(run, now, created, Phase.SETTLING if terminal else Phase.OPEN)

    def _adopt(self, run: Run, now: int, created: int, phase: Phase) -> None:
        """Start a record for a run seen for the first time; count it if already settled."""
        record = RunRecord(
            id=run.id,
            agent_id=run.agent_id,
            created_ns=created,
            phase=phase,
            status=run.status,
            terminal_seen_ns=now if phase is not Phase.OPEN else None,
            last_seen_ns=now,
        )
        record.absorb(run)
        self.records[run.id] = record
        self._dirty.add(run.id)
        if phase is Phase.SETTLING and self._settled(record, now):
            self._finish(record)

    def seed_approvals(self, runs: list[Run], now: int) -> None:
        """Runs of one thread, fetched to learn whether its newest `requires_approval`
        run (older than any scan) still waits."""
        for run in runs:
            if self._allowed(run.agent_id):
                self._note_approval(run, run.created_ns, now, 0)

    def approvals_seeding_done(self) -> None:
        """Waits older than the first scan have been looked for: never again."""
        self.approvals_seeded = True
        self.approvals.dirty = True  # persist the (maybe empty) book: the marker

    def agent_allowed(self, agent_id: str) -> bool:
        """Whether --agents.allow/--agents.deny admit this agent."""
        return self._allowed(agent_id)

    def _note_approval(self, run: Run, created: int, now: int, floor: int) -> None:
        """Feed the approval book (every observation, counted or not)."""
        stop_reason = run.stop_reason
        if stop_reason != APPROVAL_STOP_REASON and run.status in _ANSWERING_STATUSES:
            self.approvals.answered(run.id, run.agent_id, run.conversation_id, created)
            return
        # Only a request's completion time is kept: skip the conversion for other runs.
        completed = run.completed_at if stop_reason == APPROVAL_STOP_REASON else None
        self.approvals.observe(
            run_id=run.id,
            agent_id=run.agent_id,
            conversation_id=run.conversation_id,
            created_ns=created,
            status=run.status,
            stop_reason=run.stop_reason,
            terminal=run.is_terminal,
            completed_ns=to_epoch_ns(completed) if completed is not None else None,
            refused=refused_for_pending_approval(run.status, run.stop_reason, run.metadata),
            now=now,
            floor_ns=floor,
        )

    def vanished(self, run_id: str, now: int) -> None:
        """A followed run answered 404: deleted (or its agent was)."""
        self.approvals.vanished(run_id)
        record = self.records.get(run_id)
        if record is None:
            return
        if record.phase is Phase.SETTLING:
            # It did finish; count what we saw rather than lose it. Its details are gone.
            for endpoint in self._endpoints:
                self.aggregates.inc(m.ENRICHMENT_FAILURES, (endpoint,))
            self._count(record)
        elif record.phase is Phase.OPEN:
            self.aggregates.inc(m.RUNS_DELETED, (self.agent_label(record.agent_id),))
        self._drop(run_id)

    # ---- what the poller should fetch -------------------------------------------

    def unseen_open(self, since: int, now: int) -> list[RunRecord]:
        """Open runs not observed since `since` whose refresh is due (stale ones less often)."""
        return [
            r
            for r in self.records.values()
            if r.phase is Phase.OPEN and r.last_seen_ns < since and r.next_refresh_ns <= now
        ]

    def settling_needing_refresh(self, now: int) -> list[RunRecord]:
        """Finished runs past their grace period without an observation made after it."""
        return [
            r
            for r in self.records.values()
            if r.phase is Phase.SETTLING
            and r.terminal_seen_ns is not None
            and now - r.terminal_seen_ns >= self.options.grace_ns
            and r.last_seen_ns < r.terminal_seen_ns + self.options.grace_ns
        ]

    # ---- end of cycle -----------------------------------------------------------

    def finalize(self, now: int) -> int:
        """Count every settling run whose late fields have had time to land."""
        due = [
            r for r in self.records.values() if r.phase is Phase.SETTLING and self._settled(r, now)
        ]
        for record in due:
            self._finish(record)
        return len(due)

    # ---- enrichment -------------------------------------------------------------

    def enrichment_due(self, now: int, limit: int) -> list[RunRecord]:
        """Runs whose next enrichment attempt is due, oldest attempt first."""
        due = [
            r
            for r in self.records.values()
            if r.phase is Phase.ENRICHING and r.enrich is not None and r.enrich.next_try_ns <= now
        ]
        due.sort(key=lambda r: (r.enrich.next_try_ns if r.enrich else 0, r.created_ns))
        return due[:limit]

    def enrichment_backlog(self) -> int:
        """Finished runs still waiting for enrichment."""
        return sum(1 for r in self.records.values() if r.phase is Phase.ENRICHING)

    def enriched_usage(self, record: RunRecord, usage: Usage, now: int) -> None:
        """Store /usage totals."""
        assert record.enrich is not None
        record.enrich.usage = (usage.prompt_tokens, usage.completion_tokens)
        self._endpoint_done(record, "usage")

    def enriched_steps(self, record: RunRecord, steps: list[Step], now: int) -> None:
        """Store the step count, tokens by model and type, and step ids for timings."""
        assert record.enrich is not None
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
        record.enrich.tokens = tokens
        record.enrich.steps = len(steps)
        if self.tracer is not None:
            record.enrich.span_steps = [asdict(StepInfo.from_step(s)) for s in steps]
        if "step_timings" in record.enrich.pending:
            record.enrich.step_ids = [(s.id, free_value(s.model or s.model_handle)) for s in steps]
        record.enrich.step_error = next(
            (s.error_type for s in steps if s.status == "failed" and s.error_type), None
        )
        if "usage" in record.enrich.pending:
            record.enrich.pending.remove("usage")  # nothing it could add: not asked for
        self._endpoint_done(record, "steps")

    def enriched_metrics(self, record: RunRecord, metrics: RunMetrics, now: int) -> None:
        """Store num_steps (capped at 50 by Letta) and the ids of the tools used."""
        assert record.enrich is not None
        record.enrich.num_steps = metrics.num_steps
        record.enrich.tool_ids = list(dict.fromkeys(metrics.tools_used or ()))
        self._endpoint_done(record, "metrics")

    def enriched_tool_calls(self, record: RunRecord, calls: dict[str, int], now: int) -> None:
        """Store the run's tool calls by name (from its messages) in place of /metrics."""
        assert record.enrich is not None
        record.enrich.tool_calls = dict(calls)
        self._endpoint_done(record, "metrics")

    def enrichment_skipped(self, record: RunRecord, endpoint: str, now: int) -> None:
        """Letta does not serve `endpoint`: count the run without it (not a failure)."""
        enrich = record.enrich
        assert enrich is not None
        if endpoint == "steps" and "step_timings" in enrich.pending:
            enrich.pending.remove("step_timings")  # they need the step ids
        self._endpoint_done(record, endpoint)

    def enriched_step_timings(
        self, record: RunRecord, seconds: list[tuple[str, float]], now: int
    ) -> None:
        """Store (model, seconds) per step."""
        assert record.enrich is not None
        record.enrich.step_seconds = seconds
        self._endpoint_done(record, "step_timings")

    def trace_ready_ns(self, record: RunRecord) -> int:
        """When the server's spans of this run should all be readable from `/trace`."""
        end = record.completed_ns or record.terminal_seen_ns or record.created_ns
        return end + self.options.trace_delay_ns

    def defer_enrichment(self, record: RunRecord, until: int) -> None:
        """Nothing to fetch before `until` (not a failed attempt)."""
        assert record.enrich is not None
        record.enrich.next_try_ns = until
        self._dirty.add(record.id)

    def enriched_trace(self, record: RunRecord, trace: FetchedTrace | None, now: int) -> None:
        """Store the converted `/trace` spans; None (or no spans) means build the trace."""
        assert record.enrich is not None
        record.enrich.trace = trace
        self._endpoint_done(record, "trace")

    def take_new_traces(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Spans of runs counted since the last call, for the outbox (same commit)."""
        new, self._new_traces = self._new_traces, []
        return new

    def enrichment_failed(
        self, record: RunRecord, endpoint: str, now: int, *, permanent: bool
    ) -> None:
        """A fetch failed: retry later with backoff, or give the endpoint up for good."""
        enrich = record.enrich
        assert enrich is not None
        opts = self.options
        if not permanent and enrich.attempts + 1 < opts.enrich_max_attempts:
            enrich.attempts += 1
            backoff = opts.enrich_backoff_ns * 2 ** (enrich.attempts - 1)
            enrich.next_try_ns = now + min(backoff, 300 * NS_PER_S)
            self._dirty.add(record.id)
            return
        given_up = [endpoint]
        if endpoint == "steps" and "step_timings" in enrich.pending:
            given_up.append("step_timings")  # they need the step ids
        for name in given_up:
            self.aggregates.inc(m.ENRICHMENT_FAILURES, (name,))
            enrich.failed.append(name)
            if name in enrich.pending:
                enrich.pending.remove(name)
        self._dirty.add(record.id)
        if not enrich.pending:
            self._count(record)

    def unnamed_tools(self, record: RunRecord) -> list[str]:
        """Tool ids of a run whose names are not known yet."""
        ids = record.enrich.tool_ids if record.enrich is not None else None
        return [t for t in ids or () if t not in self.tool_names]

    def name_tool(self, tool_id: str, name: str) -> None:
        """Remember a tool's name (the id itself when it cannot be resolved)."""
        self.tool_names[tool_id] = name
        self._new_tool_names[tool_id] = name

    def take_new_tool_names(self) -> dict[str, str]:
        """Tool names learnt since the last call (for the checkpoint)."""
        new, self._new_tool_names = self._new_tool_names, {}
        return new

    def _endpoint_done(self, record: RunRecord, endpoint: str) -> None:
        assert record.enrich is not None
        if endpoint in record.enrich.pending:
            record.enrich.pending.remove(endpoint)
        self._dirty.add(record.id)
        if not record.enrich.pending and record.phase is Phase.ENRICHING:
            self._count(record)

    def _finish(self, record: RunRecord) -> None:
        """A settled run: count it now, or first fetch its details."""
        if not self._endpoints:
            self._count(record)
            return
        record.phase = Phase.ENRICHING
        record.enrich = Enrichment(pending=list(self._endpoints))
        self._dirty.add(record.id)

    def housekeeping(self, now: int) -> None:
        """Prune records no scan can list again; expire and cap the open set."""
        floor = self.dedupe_floor_ns()
        keep_below = self.scan.pos[0] if self.scan is not None and self.scan.pos else None
        opts = self.options
        for record in list(self.records.values()):
            if record.phase in (Phase.DONE, Phase.BASELINE):
                # Records below a pending scan's position may be listed by it again.
                if record.created_ns < floor and (
                    keep_below is None or record.created_ns >= keep_below
                ):
                    self._drop(record.id)
            elif record.phase is Phase.OPEN:
                age = now - record.created_ns
                if age > opts.forget_after_ns:
                    self.aggregates.inc(m.OPEN_RUNS_DROPPED, ("expired",))
                    self._drop(record.id)
                elif age > opts.stale_after_ns and record.next_refresh_ns <= record.last_seen_ns:
                    record.next_refresh_ns = record.last_seen_ns + opts.stale_refresh_ns
        self.approvals.prune(floor)
        open_runs = [r for r in self.records.values() if r.phase is Phase.OPEN]
        excess = len(open_runs) - opts.max_open_runs
        if excess > 0:
            for record in heapq.nsmallest(excess, open_runs, key=lambda r: r.created_ns):
                self.aggregates.inc(m.OPEN_RUNS_DROPPED, ("capacity",))
                self._drop(record.id)

    def dedupe_floor_ns(self) -> int:
        """Runs created before this are outside the window scans re-read."""
        if self.hwm_ns is None:
            return 0
        return self.hwm_ns - self.options.lookback_ns

    # ---- views ------------------------------------------------------------------

    def open_runs(self, now: int) -> Iterator[OpenRunView]:
        """Open runs with the labels the gauges use."""
        stale_after = self.options.stale_after_ns
        for r in self.records.values():
            if r.phase is Phase.OPEN:
                yield OpenRunView(
                    self.agent_label(r.agent_id, count_overflow=False),
                    enum_value(r.status),
                    r.created_ns,
                    now - r.created_ns > stale_after,
                )

    def approval_waits(self, now: int) -> Iterator[ApprovalWaitView]:
        """Pending approvals with the agent label the gauges use."""
        # A zombie (stale) run does not make its thread look busy.
        busy_after = now - self.options.stale_after_ns
        for wait in self.approvals.waits(working_after_ns=busy_after):
            yield ApprovalWaitView(
                self.agent_label(wait.agent_id, count_overflow=False), wait.since_ns
            )

    def next_settle_ns(self, now: int) -> int | None:
        """The next moment after `now` when a settling run's wait (grace period, then
        callback wait) ends, so the poller can look again then rather than a whole
        interval later."""
        grace, callback_wait = self.options.grace_ns, self.options.callback_wait_ns
        moments = []
        for r in self.records.values():
            if r.phase is not Phase.SETTLING or r.terminal_seen_ns is None:
                continue
            if r.terminal_seen_ns + grace > now:
                moments.append(r.terminal_seen_ns + grace)
            elif (
                r.callback and not r.callback_recorded and r.terminal_seen_ns + callback_wait > now
            ):
                moments.append(r.terminal_seen_ns + callback_wait)
        return min(moments, default=None)

    def oldest_uncounted_finish_ns(self) -> int | None:
        """When the longest-waiting finished run not yet counted finished, if any."""
        return min(
            (
                r.completed_ns if r.completed_ns is not None else r.terminal_seen_ns or 0
                for r in self.records.values()
                if r.phase in (Phase.SETTLING, Phase.ENRICHING)
            ),
            default=None,
        )

    def followed_count(self) -> int:
        """Runs being followed: open or settling."""
        return sum(1 for r in self.records.values() if r.phase in (Phase.OPEN, Phase.SETTLING))

    def phase_counts(self) -> Counter[Phase]:
        """Records by phase (for tests and debugging)."""
        return Counter(r.phase for r in self.records.values())

    def take_changes(self) -> tuple[list[RunRecord], list[str]]:
        """Records changed and ids removed since the last call."""
        changed = [self.records[i] for i in self._dirty if i in self.records]
        removed = list(self._removed)
        self._dirty.clear()
        self._removed.clear()
        return changed, removed

    def load(self, records: list[RunRecord], meta: dict[str, str]) -> None:
        """Restore records and positions from the checkpoint."""
        for record in records:
            self.records[record.id] = record
        if "hwm_ns" in meta:
            self.hwm_ns = int(meta["hwm_ns"])
        scan = json.loads(meta.get("scan", "null"))
        self.scan = Walk.from_json(scan) if scan else None
        approvals = meta.get("approvals")
        if approvals is not None:
            self.approvals = ApprovalBook.from_json(json.loads(approvals))
            self.approvals_seeded = True
        if "listed_until_ns" in meta:
            self.listed_until_ns = int(meta["listed_until_ns"])

    def approvals_json(self) -> str | None:
        """The approval book as meta, when it changed since the last call."""
        if not self.approvals.dirty:
            return None
        self.approvals.dirty = False
        return json.dumps(self.approvals.to_json(), separators=(",", ":"))

    def scan_json(self) -> str:
        """The pending scan, persisted as meta."""
        return json.dumps(self.scan.to_json() if self.scan is not None else None)

    # ---- internals --------------------------------------------------------------

    def _settled(self, record: RunRecord, now: int) -> bool:
        if record.completed_ns is not None and now - record.completed_ns > SETTLED_AGE_NS:
            return True
        seen = record.terminal_seen_ns
        if seen is None or now - seen < self.options.grace_ns:
            return False
        if record.last_seen_ns < seen + self.options.grace_ns:
            return False  # no observation since the grace period ended: refresh first
        return not (
            record.callback
            and not record.callback_recorded
            and now - seen < self.options.callback_wait_ns
        )

    def _count(self, record: RunRecord, *, keep: bool = True) -> None:
        ttft_ns = record.ttft_ns
        trace_id: str | None = None
        if self.tracer is not None:
            fetched = record.enrich.trace if record.enrich is not None else None
            if ttft_ns is None and fetched is not None:
                # Letta leaves ttft_ns null (always, in 0.16.8): the trace event has it.
                ttft_ns = fetched.ttft_ns
            trace_id = self._trace(record)
        self._count_values(
            record.agent_id,
            record.status,
            record.stop_reason,
            run_duration_seconds(record),
            ttft_ns,
            _callback_result(record.callback, record.callback_code, record.callback_error),
            path_labels(record.run_type, record.background),
            error_type=failure_error_type(
                record.enrich.step_error if record.enrich is not None else None,
                record.error_type,
            ),
            exemplar=trace_id,
        )
        if record.enrich is not None:
            self._count_enrichment(self.agent_label(record.agent_id), record.enrich)
            record.enrich = None  # counted: only the dedupe fields are kept
        record.phase = Phase.DONE
        if keep:
            self.records[record.id] = record
            self._dirty.add(record.id)
        else:
            self._drop(record.id)

    def _count_values(
        self,
        agent_id: str,
        status: str,
        stop_reason: str | None,
        duration_s: float | None,
        ttft_ns: int | None,
        callback: str | None,
        path: tuple[str, str],
        *,
        error_type: str | None,
        exemplar: str | None = None,
    ) -> None:
        """The one place a finished run turns into counter and histogram samples.

        `error_type` names the cause when the run failed; `exemplar` is the run's trace
        id, attached to its duration and TTFT samples.
        """
        agg = self.aggregates
        agent = self.agent_label(agent_id)
        status_label = enum_value(status)
        agg.inc(m.RUNS_FINISHED, (agent, status_label, enum_value(stop_reason)))
        if is_failure(status, stop_reason):
            agg.inc(m.RUNS_FAILED, (agent, self.error_type_label(error_type or NONE)))
        run_type, background = path
        agg.inc(m.RUNS_FINISHED_BY_PATH, (self.run_type_label(run_type), background))
        if duration_s is not None and duration_s >= 0:
            agg.observe(m.RUN_DURATION, (agent, status_label), duration_s, exemplar)
        if ttft_ns is not None and ttft_ns >= 0:
            agg.observe(m.RUN_TTFT, (agent,), ttft_ns / NS_PER_S, exemplar)
        if callback is not None:
            agg.inc(m.RUN_CALLBACKS, (agent, callback))

    def _count_enrichment(self, agent: str, enrich: Enrichment) -> None:
        """Tokens, steps, tools, cost and step timings of one run (what was fetched)."""
        agg = self.aggregates
        tokens = enrich.tokens
        if tokens is None and enrich.usage is not None:
            # No step detail: /usage has the totals but neither model nor cache split.
            tokens = {"unknown": {"input": enrich.usage[0], "output": enrich.usage[1]}}
        for model, by_type in (tokens or {}).items():
            model_label = self.model_label(model)
            for kind, value in by_type.items():
                if value:
                    agg.inc(m.RUN_TOKENS, (agent, model_label, kind), value)
            if self.prices is not None:
                cost = self.prices.cost(model, by_type)
                if cost is not None:
                    agg.inc(m.RUN_COST, (agent, model_label), cost)
        steps = enrich.steps if enrich.steps is not None else enrich.num_steps
        if steps is not None:
            agg.observe(m.RUN_STEPS, (agent,), steps)
        for tool_id in enrich.tool_ids or ():
            name = free_value(self.tool_names.get(tool_id, tool_id))
            agg.inc(m.RUN_TOOL_CALLS, (agent, self.tool_label(name)))
        for name, calls in (enrich.tool_calls or {}).items():
            tool = self.tool_label(free_value(name))
            agg.inc(m.RUN_TOOL_CALLS, (agent, tool))
            agg.inc(m.RUN_TOOL_INVOCATIONS, (agent, tool), calls)
        for model, seconds in enrich.step_seconds or ():
            agg.observe(m.STEP_DURATION, (agent, self.model_label(model)), seconds)

    def _trace(self, record: RunRecord) -> str:
        """Queue the run's spans for the outbox; returns their trace id."""
        assert self.tracer is not None
        enrich = record.enrich
        fetched = enrich.trace if enrich is not None else None
        if fetched is not None and fetched.spans and fetched.trace_id is not None:
            self._new_traces.append((record.id, fetched.spans))
            return fetched.trace_id
        spans_steps = (enrich.span_steps if enrich else None) or ()
        tool_ids = (enrich.tool_ids if enrich else None) or ()
        called = (enrich.tool_calls if enrich else None) or {}
        names = [self.tool_names.get(t, t) for t in tool_ids] + list(called)
        info = _run_info(
            record,
            steps=tuple(_step_info(s) for s in spans_steps),
            tool_names=tuple(dict.fromkeys(names)),
        )
        spans, trace_id = self.tracer.build(info)
        self._new_traces.append((record.id, spans))
        return trace_id

    def _drop(self, run_id: str) -> None:
        if self.records.pop(run_id, None) is not None:
            self._removed.add(run_id)
        self._dirty.discard(run_id)


def run_duration_seconds(record: RunRecord) -> float | None:
    """Letta's own run_ns when the list gave it, else completed_at - created_at."""
    if record.duration_ns is not None and record.duration_ns >= 0:
        return record.duration_ns / NS_PER_S
    if record.completed_ns is not None and record.completed_ns >= record.created_ns:
        return (record.completed_ns - record.created_ns) / NS_PER_S
    return None


def _run_info(
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
    # Fields a newer or older exporter saved that this one does not know are ignored, so
    # an upgrade while runs wait for enrichment cannot break counting them.
    known: dict[str, Any] = dict.fromkeys(_STEP_FIELDS)
    known.update({"id": "", "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    known.update((k, v) for k, v in data.items() if k in _STEP_FIELDS)
    return StepInfo(**known)


def path_labels(run_type: str | None, background: bool | None) -> tuple[str, str]:
    """The API path that created a run as (run_type, background) label values."""
    return enum_value(run_type), "unknown" if background is None else str(background).lower()


def _run_type(metadata: Any) -> str | None:
    run_type = metadata.get("run_type") if isinstance(metadata, dict) else None
    return run_type if isinstance(run_type, str) else None


def _callback_result(has_callback: bool, code: int | None, error: bool) -> str | None:
    """success (2xx), failure (error or other status), unknown (nothing recorded), or
    None when the run had no callback URL."""
    if not has_callback:
        return None
    if error or (code is not None and code >= 300):
        return "failure"
    if code is not None:
        return "success"
    return "unknown"
