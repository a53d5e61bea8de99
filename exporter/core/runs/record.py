"""A run as the exporter knows it: its record, its phase and what enrichment fetched.

Data and the rules that read one record only; the rules that move records between
phases live in `exporter.core.book.lifecycle`, the persisted form in `exporter.store.rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from exporter.core.labels import enum_value
from exporter.core.runs.errors import error_type_from_metadata
from exporter.core.runs.run_info import FetchedTrace
from exporter.letta.models import Run, to_epoch_ns
from exporter.units import NS_PER_S


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


def endpoints_for(asked: tuple[str, ...], *, traces: bool) -> tuple[str, ...]:
    """The enrichment endpoints asked for every finished run, in fetch order; the
    trace is fetched whenever traces are exported."""
    return tuple(e for e in ENDPOINTS if e in asked or (e == "trace" and traces))


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
    open_with_stop_reason: bool = False
    """Seen created or running with a stop reason, and counted so (once per run)."""

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
            self.run_type = run_type_of(metadata)
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
            self.open_with_stop_reason,
        )

    @property
    def callback_recorded(self) -> bool:
        """Whether Letta has written the callback's outcome (status code or error)."""
        return self.callback_code is not None or self.callback_error


def run_duration_seconds(record: RunRecord) -> float | None:
    """Letta's own run_ns when the list gave it, else completed_at - created_at."""
    if record.duration_ns is not None and record.duration_ns >= 0:
        return record.duration_ns / NS_PER_S
    if record.completed_ns is not None and record.completed_ns >= record.created_ns:
        return (record.completed_ns - record.created_ns) / NS_PER_S
    return None


def path_labels(run_type: str | None, background: bool | None) -> tuple[str, str]:
    """The API path that created a run as (run_type, background) label values."""
    return enum_value(run_type), "unknown" if background is None else str(background).lower()


def run_type_of(metadata: Any) -> str | None:
    """`metadata.run_type` when it is a string."""
    run_type = metadata.get("run_type") if isinstance(metadata, dict) else None
    return run_type if isinstance(run_type, str) else None


def callback_result(has_callback: bool, code: int | None, error: bool) -> str | None:
    """success (2xx), failure (error or other status), unknown (nothing recorded), or
    None when the run had no callback URL."""
    if not has_callback:
        return None
    if error or (code is not None and code >= 300):
        return "failure"
    if code is not None:
        return "success"
    return "unknown"
