"""Tool calls read from messages: one run's (`GET /v1/runs/{id}/messages`) or every
run's (`GET /v1/messages/`, the walk)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from exporter.letta.bodies import json_array
from exporter.letta.models import to_epoch_ns

# Messages that carry the tool calls a run made (an approval request is a call too, as
# run_metrics.tools_used counts it).
_TOOL_CALL_MESSAGES: Final = frozenset({"tool_call_message", "approval_request_message"})


@dataclass(frozen=True, slots=True)
class ListedMessage:
    """What the walk keeps of one listed message: its id, its run and its tool calls."""

    id: str
    run_id: str | None
    date_ns: int | None
    """The message's `date` (its created_at), None when missing or unreadable."""
    calls: tuple[tuple[str, str], ...]
    """(call key, tool name) per call: the call id, or `<message id>#<n>` without one."""


def _date_ns(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return to_epoch_ns(datetime.fromisoformat(value))
    except ValueError:
        return None


def _calls(message: dict[str, Any], message_id: Any) -> Iterator[tuple[str, str]]:
    if message.get("message_type") not in _TOOL_CALL_MESSAGES:
        return
    listed = message.get("tool_calls")
    single = message.get("tool_call")
    for n, call in enumerate(listed if isinstance(listed, list) and listed else [single]):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            continue
        call_id = call.get("tool_call_id")
        yield (call_id if isinstance(call_id, str) else f"{message_id}#{n}", call["name"])


def collect_tool_calls(body: bytes, calls: dict[str, int], seen_calls: set[str]) -> list[str]:
    """Add the page's tool calls to `calls`; returns the page's message ids in order.

    A call already in `seen_calls` (by call id) is not counted again.
    """
    ids: list[str] = []
    for message in json_array("run_messages", body):
        if not isinstance(message, dict):
            continue
        message_id = message.get("id")
        if isinstance(message_id, str):
            ids.append(message_id)
        for key, name in _calls(message, message_id):
            if key in seen_calls:
                continue
            seen_calls.add(key)
            calls[name] = calls.get(name, 0) + 1
    return ids


def listed_messages(body: bytes) -> list[ListedMessage]:
    """A page of `GET /v1/messages/`, each message reduced to its id, run and tool calls;
    items without a string id are left out (they cannot be a cursor or be grouped)."""
    out: list[ListedMessage] = []
    for message in json_array("messages", body):
        if not isinstance(message, dict):
            continue
        message_id = message.get("id")
        if not isinstance(message_id, str):
            continue
        run_id = message.get("run_id")
        out.append(
            ListedMessage(
                message_id,
                run_id if isinstance(run_id, str) else None,
                _date_ns(message.get("date")),
                tuple(_calls(message, message_id)),
            )
        )
    return out
