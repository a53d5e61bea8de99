"""The vocabulary of Letta 0.16.8 the fake speaks: statuses, stop reasons, ids, limits."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

Semantics = Literal["letta-0.16.8", "conventional", "relative"]
Backend = Literal["postgres", "sqlite"]
UnknownCursor = Literal["404", "ignore"]
Timestamp = float | datetime | str
"""Accepted wherever the control API takes a time: epoch seconds, a datetime (naive means
UTC) or an ISO-8601 string such as the fixtures' ``2026-11-23T12:01:42.556550Z``."""


RUN_STATUSES: Final = ("created", "running", "completed", "failed", "cancelled")
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
ACTIVE_STATUSES: Final = ("created", "running")
# Declaration order of StopReasonType matters: pydantic lists it in this order in the 422.
STOP_REASONS: Final = (
    "end_turn",
    "error",
    "llm_api_error",
    "invalid_llm_response",
    "invalid_tool_call",
    "max_steps",
    "max_tokens_exceeded",
    "no_tool_call",
    "tool_rule",
    "cancelled",
    "insufficient_credits",
    "requires_approval",
    "context_window_overflow_in_system_prompt",
)

# StopReasonType.run_status for the reasons whose run does not fail (§2.3).
CANONICAL_STATUS: Final = {
    "end_turn": "completed",
    "max_steps": "completed",
    "tool_rule": "completed",
    "requires_approval": "completed",
    "cancelled": "cancelled",
}

SERVER_VERSION: Final = "0.16.8"
DEFAULT_ORG_ID: Final = "org-00000000-0000-4000-8000-000000000000"
DEFAULT_USER_ID: Final = "user-00000000-0000-4000-8000-000000000000"

USAGE_STEP_WINDOW: Final = 50  # step manager's default list limit (§3.5, §2.5)
# metadata.error of the run a message refused while an approval waits leaves (HTTP 409;
# fixtures runs/sync_pending_approval_conflict/run.json).
PENDING_APPROVAL_ERROR: Final = (
    "CONFLICT: Cannot send a new message: The agent is waiting for approval on a tool "
    "call. Please approve or deny the pending request before continuing."
)
# The same refusal on a streaming path (conversations stream by default): Letta 0.16.8's
# StreamingService catches it inside the stream, answers 200 with an SSE error event, and
# writes failed + `error` with this error object after {"message_type": "error_message",
# "run_id": ...} (letta/services/streaming_service.py; seen on the real server,
# tests/test_realserver_deadlock.py).
PENDING_APPROVAL_STREAM_ERROR: Final = {
    "error_type": "internal_error",
    "message": PENDING_APPROVAL_ERROR,
    "detail": PENDING_APPROVAL_ERROR,
    "seq_id": None,
}
ACTIVE_ENDPOINT_LIMIT: Final = 100  # /v1/runs/active (§3.2)

# letta.schemas.enums.ToolType, declaration order.
TOOL_TYPES: Final = (
    "custom",
    "letta_core",
    "letta_memory_core",
    "letta_multi_agent_core",
    "letta_sleeptime_core",
    "letta_voice_sleeptime_core",
    "letta_builtin",
    "letta_files_core",
    "external_langchain",
    "external_composio",
    "external_mcp",
)

# The model every bulk-loaded step reports (handle; the Step's ``model`` is "fake-llm").
BULK_MODEL: Final = "openai-proxy/fake-llm"

# The (status, stop reason) outcomes that bursts and bulk loads cycle through.
DEFAULT_STATUS_CYCLE: Final[tuple[tuple[str, str | None], ...]] = (
    ("completed", "end_turn"),
    ("completed", "end_turn"),
    ("completed", "max_steps"),
    ("failed", "llm_api_error"),
    ("completed", "requires_approval"),
    ("cancelled", "cancelled"),
    ("failed", None),
    ("completed", "tool_rule"),
)
