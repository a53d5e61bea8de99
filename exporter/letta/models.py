"""Pydantic models of the Letta runs API, tolerant of new fields and unknown enum values.

Enums are kept as plain strings: a server newer than 0.16.8 may add a status or stop
reason, and dropping such a run would lose it. Label sanitising happens where values
become labels (`exporter.core.labels`), not here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from exporter.units import NS_PER_S

# The values a 0.16.8 server can produce (letta-runs-api.md §2.2, §2.3).
OPEN_STATUSES: Final = frozenset({"created", "running"})
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
FAILED_STOP_REASONS: Final = frozenset(
    {
        "error",
        "llm_api_error",
        "invalid_llm_response",
        "invalid_tool_call",
        "no_tool_call",
        "max_tokens_exceeded",
        "context_window_overflow_in_system_prompt",
        "insufficient_credits",
    }
)
"""Stop reasons whose canonical run status is `failed` (§2.3; not enforced by Letta)."""


def is_failure(status: str, stop_reason: str | None) -> bool:
    """Whether a finished run failed: status `failed`, or a failing stop reason on a run
    Letta marked `completed` (a stream that hit an LLM error ends that way, §5.2)."""
    return status == "failed" or stop_reason in FAILED_STOP_REASONS


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)


def to_epoch_ns(value: datetime) -> int:
    """Nanoseconds since the Unix epoch; a naive datetime is UTC (Letta's `completed_at`)."""
    delta = value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


CursorParam = Literal["before", "after"]
"""The list parameter that pages older than a cursor (`before` on 0.16.8)."""


class _Answer(BaseModel):
    # Letta adds fields between releases; the exporter reads only the ones it names.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Run(_Answer):
    """One element of `GET /v1/runs/` or the body of `GET /v1/runs/{id}` (§2.1)."""

    id: str
    agent_id: str
    status: str
    created_at: datetime
    completed_at: datetime | None = None
    stop_reason: str | None = None
    background: bool | None = None
    conversation_id: str | None = None
    metadata: Any = None
    callback_url: str | None = None
    callback_sent_at: datetime | None = None
    callback_status_code: int | None = None
    callback_error: str | None = None
    ttft_ns: int | None = None
    total_duration_ns: int | None = None

    @property
    def created_ns(self) -> int:
        """`created_at` as epoch nanoseconds (the list's sort key)."""
        return to_epoch_ns(self.created_at)

    @property
    def is_terminal(self) -> bool:
        """Finished, judged by status, or for an unknown status by a completion mark.

        An unknown status with neither `completed_at` nor a stop reason is treated as
        still open, so it is followed rather than counted too early.
        """
        if self.status in TERMINAL_STATUSES:
            return True
        if self.status in OPEN_STATUSES:
            return False
        return self.completed_at is not None or self.stop_reason is not None


class Usage(_Answer):
    """`GET /v1/runs/{id}/usage`: three totals over the run's 50 newest steps (§2.4, §3.5)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Step(_Answer):
    """One element of `GET /v1/runs/{id}/steps` (§2.6); only what the exporter uses."""

    id: str
    run_id: str | None = None
    model: str | None = None
    model_handle: str | None = None
    provider_name: str | None = None
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = 0
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    status: str | None = None
    stop_reason: str | None = None
    trace_id: str | None = None
    error_type: str | None = None
    project_id: str | None = None  # Letta Cloud; null self-hosted


class RunMetrics(_Answer):
    """`GET /v1/runs/{id}/metrics` (§2.5): `num_steps` counts at most 50 steps."""

    id: str
    run_ns: int | None = None
    num_steps: int | None = None
    tools_used: list[str] | None = None


class Agent(_Answer):
    """One element of `GET /v1/agents/`: only what labels the runs' agents."""

    id: str
    name: str | None = None


class Tool(_Answer):
    """`GET /v1/tools/{id}`: only the name is needed, to label tool metrics."""

    id: str
    name: str


class StepMetrics(_Answer):
    """`GET /v1/steps/{id}/metrics`: per-step timings in nanoseconds (§2.6)."""

    id: str
    step_ns: int | None = None
    llm_request_ns: int | None = None
    tool_execution_ns: int | None = None
