"""Tool calls read from a run's messages (`GET /v1/runs/{id}/messages`)."""

from __future__ import annotations

from typing import Final

from exporter.letta.bodies import json_array

# Messages that carry the tool calls a run made (an approval request is a call too, as
# run_metrics.tools_used counts it).
_TOOL_CALL_MESSAGES: Final = frozenset({"tool_call_message", "approval_request_message"})


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
        if message.get("message_type") not in _TOOL_CALL_MESSAGES:
            continue
        listed = message.get("tool_calls")
        single = message.get("tool_call")
        for n, call in enumerate(listed if isinstance(listed, list) and listed else [single]):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                continue
            call_id = call.get("tool_call_id")
            key = call_id if isinstance(call_id, str) else f"{message_id}#{n}"
            if key in seen_calls:
                continue
            seen_calls.add(key)
            calls[call["name"]] = calls.get(call["name"], 0) + 1
    return ids
