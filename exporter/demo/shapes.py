"""The JSON bodies Letta 0.16.8 serves, with the keys of the captured responses
(tests/fixtures/letta-0.16.8; tests/test_demo_parity.py compares them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from exporter.demo.world import Agent, SimRun, Step, Tool

ORG_ID: Final = "org-00000000-0000-4000-8000-000000000000"
REQUEST_CONFIG: Final = {
    "use_assistant_message": True,
    "assistant_message_tool_name": "send_message",
    "assistant_message_tool_kwarg": "message",
    "include_return_message_types": None,
}
# What 0.16.8 answers for /trace without ClickHouse (the exporter then builds traces).
TRACE_NOT_SERVED: Final = {
    "detail": "OTEL traces require ClickHouse. Set LETTA_CLICKHOUSE_ENDPOINT and configure "
    "ClickHouse connection."
}
HEALTH: Final = {"version": "0.16.8", "status": "ok"}


def timestamp(ns: int, *, zulu: bool) -> str:
    """Letta's timestamps: microseconds, `Z` on `created_at`, none on `completed_at`."""
    text = datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text + "Z" if zulu else text


def run_body(run: SimRun, now_ns: int, *, listed: bool) -> dict[str, Any]:
    """A run as `GET /v1/runs/` (listed: with `total_duration_ns`) or `/v1/runs/{id}` shows it."""
    done = run.finished(now_ns)
    metadata: dict[str, Any] = {"run_type": run.run_type}
    if run.run_type == "send_message_async":
        metadata["lettuce"] = None
    if done and run.error is not None:
        metadata["error"] = _error_metadata(run)
    return {
        "id": run.id,
        "status": run.status(now_ns),
        "created_at": timestamp(run.created_ns, zulu=True),
        "completed_at": timestamp(run.end_ns, zulu=False) if done else None,
        "agent_id": run.agent.id,
        "conversation_id": None,
        "base_template_id": None,
        "background": run.background,
        "metadata": metadata,
        "request_config": REQUEST_CONFIG,
        "stop_reason": run.stop_reason if done else None,
        "callback_url": None,
        "callback_sent_at": None,
        "callback_status_code": None,
        "callback_error": None,
        "ttft_ns": None,
        "total_duration_ns": run.end_ns - run.created_ns if done and listed else None,
    }


def _error_metadata(run: SimRun) -> Any:
    detail = (
        "INTERNAL_SERVER_ERROR: OpenAI API error: Error code: 500 - {'error': {'message': "
        "'The server had an error while processing your request.', 'type': 'server_error'}}"
    )
    if run.run_type == "send_message_async":
        return detail  # async runs keep the error as one string
    return {
        "message_type": "error_message",
        "run_id": run.id,
        "error_type": "llm_error",
        "message": "An error occurred with the LLM request.",
        "detail": detail,
        "seq_id": None,
    }


def step_body(run: SimRun, step: Step) -> dict[str, Any]:
    """One element of `GET /v1/runs/{id}/steps`."""
    failed = step.error_type is not None
    return {
        "id": step.id,
        "origin": None,
        "organization_id": ORG_ID,
        "provider_id": None,
        "run_id": run.id,
        "agent_id": run.agent.id,
        "provider_name": run.agent.provider,
        "provider_category": "base",
        "model": run.agent.model,
        "model_handle": f"{run.agent.provider}/{run.agent.model}",
        "model_endpoint": run.agent.endpoint,
        "context_window_limit": 128000,
        "completion_tokens": step.completion_tokens,
        "prompt_tokens": step.prompt_tokens,
        "total_tokens": step.prompt_tokens + step.completion_tokens,
        "cached_input_tokens": None,
        "cache_write_tokens": None,
        "reasoning_tokens": None,
        "completion_tokens_details": None if failed else {"reasoning_tokens": 0},
        "prompt_tokens_details": None
        if failed
        else {
            "cached_tokens": step.cached_tokens,
            "cache_read_tokens": 0,
            "cache_creation_tokens": 0,
        },
        "stop_reason": step.stop_reason,
        "tags": [],
        "tid": None,
        "trace_id": None,
        "request_id": None,
        "messages": [],
        "feedback": None,
        "project_id": None,
        "error_type": step.error_type,
        "error_data": {
            "message": "INTERNAL_SERVER_ERROR: OpenAI API error",
            "traceback": "",
            "details": None,
        }
        if failed
        else None,
        "status": "failed" if failed else "success",
    }


def metrics_body(run: SimRun) -> dict[str, Any]:
    """`GET /v1/runs/{id}/metrics`."""
    tools = sorted({call.tool.id for step in run.steps for call in step.calls})
    return {
        "id": run.id,
        "organization_id": ORG_ID,
        "agent_id": run.agent.id,
        "project_id": None,
        "run_start_ns": run.created_ns,
        "run_ns": run.end_ns - run.created_ns,
        "num_steps": len(run.steps),
        "tools_used": tools or None,
        "template_id": None,
        "base_template_id": None,
    }


def usage_body(run: SimRun) -> dict[str, Any]:
    """`GET /v1/runs/{id}/usage`: three totals."""
    prompt = sum(s.prompt_tokens for s in run.steps)
    completion = sum(s.completion_tokens for s in run.steps)
    return {
        "completion_tokens": completion,
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }


def messages_body(run: SimRun) -> list[dict[str, Any]]:
    """`GET /v1/runs/{id}/messages`: the user message, tool calls and returns, the answer."""
    date = datetime.fromtimestamp(run.created_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    messages = []
    for index, step in enumerate(run.steps):
        base = {"date": date, "sender_id": None, "step_id": step.id, "is_err": None}
        base |= {"seq_id": None, "run_id": run.id}
        if index == 0:
            text = "What is on my schedule today?"
            messages.append(_message(f"{step.id}-u", "user_message", base, content=text))
        for call in step.calls:
            wire = {"name": call.tool.name, "arguments": "{}", "tool_call_id": call.id}
            kind = "approval_request_message" if call.needs_approval else "tool_call_message"
            messages.append(_message(f"{call.id}-c", kind, base, tool_call=wire, tool_calls=[wire]))
            if not call.needs_approval:
                messages.append(_tool_return(call.id, call.tool.name, base))
        if step.stop_reason == "end_turn":
            messages.append(_message(f"{step.id}-a", "assistant_message", base, content="Done."))
    return messages


def _message(key: str, kind: str, base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    message_id = f"message-{key}"
    return {"id": message_id, "date": base["date"], "name": None, "message_type": kind} | {
        "otid": message_id,
        **{k: v for k, v in base.items() if k != "date"},
        **fields,
    }


def _tool_return(call_id: str, name: str, base: dict[str, Any]) -> dict[str, Any]:
    body = _message(f"{call_id}-r", "tool_return_message", base, tool_return="ok")
    body["name"] = name
    body |= {"status": "success", "tool_call_id": call_id, "stdout": None, "stderr": None}
    body["tool_returns"] = [{"type": "tool", "tool_return": "ok", "status": "success"}]
    return body


def agent_body(agent: Agent) -> dict[str, Any]:
    """One element of `GET /v1/agents/` without relationships (the keys the exporter reads
    and a few that name it; the real list carries 45)."""
    return {
        "id": agent.id,
        "name": agent.name,
        "description": agent.description,
        "agent_type": "letta_v1_agent",
        "model": f"{agent.provider}/{agent.model}",
        "tags": [],
        "metadata": None,
        "project_id": None,
    }


def tool_body(tool: Tool) -> dict[str, Any]:
    """`GET /v1/tools/{id}`."""
    return {
        "id": tool.id,
        "tool_type": tool.tool_type,
        "description": tool.description,
        "source_type": "python",
        "name": tool.name,
        "tags": [],
        "source_code": None,
        "json_schema": {
            "name": tool.name,
            "description": tool.description,
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
        "args_json_schema": None,
        "return_char_limit": 50000,
        "pip_requirements": None,
        "npm_requirements": None,
        "default_requires_approval": None,
        "enable_parallel_execution": False,
        "created_by_id": "user-00000000-0000-4000-8000-000000000000",
        "last_updated_by_id": "user-00000000-0000-4000-8000-000000000000",
        "metadata_": {},
        "project_id": None,
    }


def encode(body: Any) -> bytes:
    """Compact JSON, as FastAPI writes it."""
    return json.dumps(body, separators=(",", ":")).encode()
