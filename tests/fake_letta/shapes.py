"""The JSON bodies of Letta 0.16.8, in the fixtures' key order: runs, run metrics, steps,
step metrics, tools, agents and tool-call messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tests.fake_letta.constants import DEFAULT_ORG_ID, DEFAULT_USER_ID
from tests.fake_letta.model import Run, Step, Timings, step_model
from tests.fake_letta.wire import encode_str, fmt_us, json_value

REQUEST_CONFIG_JSON: Final = (
    '{"use_assistant_message":true,"assistant_message_tool_name":"send_message",'
    '"assistant_message_tool_kwarg":"message","include_return_message_types":null}'
)

_FUNCTION_RETURN_CHAR_LIMIT: Final = 50_000  # letta.constants; Tool.return_char_limit default


def encode_run(run: Run, total_duration_ns: int | None, *, zulu: bool) -> bytes:
    """The Run JSON (17 keys in the fixtures' order, compact like FastAPI), built from
    an f-string template: json.dumps of the nested dict costs several times more and
    a million runs add up."""
    completed = run.completed_us
    sent = run.callback_sent_us
    completed_json = "null" if completed is None else f'"{fmt_us(completed, zulu=False)}"'
    sent_json = "null" if sent is None else f'"{fmt_us(sent, zulu=False)}"'
    return (
        f'{{"id":{encode_str(run.sid)},"status":{json_value(run.status)},'
        f'"created_at":"{fmt_us(run.us, zulu=zulu)}","completed_at":{completed_json},'
        f'"agent_id":{json_value(run.agent_id)},"conversation_id":{json_value(run.conversation_id)},'
        f'"base_template_id":null,"background":{json_value(run.background)},'
        f'"metadata":{run.meta_json},"request_config":{REQUEST_CONFIG_JSON},'
        f'"stop_reason":{json_value(run.stop_reason)},"callback_url":{json_value(run.callback_url)},'
        f'"callback_sent_at":{sent_json},'
        f'"callback_status_code":{json_value(run.callback_status_code)},'
        f'"callback_error":{json_value(run.callback_error)},'
        f'"ttft_ns":null,"total_duration_ns":{json_value(total_duration_ns)}}}'
    ).encode()


def metrics_dict(run: Run, project_id: str | None) -> dict[str, Any]:
    """A RunMetrics row as ``/v1/runs/{id}/metrics`` serves it."""
    return {
        "id": run.sid,
        "organization_id": DEFAULT_ORG_ID,
        "agent_id": run.agent_id,
        "project_id": project_id,
        "run_start_ns": run.run_start_ns,
        "run_ns": run.m_run_ns,
        "num_steps": run.m_num_steps,
        "tools_used": run.m_tools,
        "template_id": None,
        "base_template_id": None,
    }


def tool_dict(tool_id: str, name: str, tool_type: str) -> dict[str, Any]:
    """A Tool as ``GET /v1/tools/{id}`` returns it: the 18 keys of the fixtures' tools in
    ``letta.schemas.tool.Tool`` declaration order."""
    builtin = tool_type.startswith("letta_")
    description = f"{name} (fake {tool_type} tool)."
    return {
        "id": tool_id,
        "tool_type": tool_type,
        "description": description,
        "source_type": "python",
        "name": name,
        "tags": [tool_type] if builtin else [],
        # Built-ins have no stored source (their schema comes from the module); custom
        # tools carry what the client uploaded.
        "source_code": None if builtin else f"def {name}() -> str:\n    return 'ok'\n",
        "json_schema": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
        "args_json_schema": None,
        "return_char_limit": _FUNCTION_RETURN_CHAR_LIMIT,
        "pip_requirements": None,
        "npm_requirements": None,
        "default_requires_approval": None,
        "enable_parallel_execution": False,  # schema default; only some built-ins are True
        "created_by_id": DEFAULT_USER_ID,
        "last_updated_by_id": DEFAULT_USER_ID,
        "metadata_": {},
        "project_id": None,
    }


def step_metrics_dict(step_id: str, run: Run, timings: Timings) -> dict[str, Any]:
    """``letta.schemas.step_metrics.StepMetrics`` in declaration order (13 keys).

    ``StepManager.record_step_metrics_async`` writes only the three durations plus ids,
    so ``step_start_ns`` and ``llm_request_start_ns`` (ORM columns that the agent loop
    tracks in memory) are always null as served by 0.16.8; so are the provider and the
    cloud-only template/project ids on a self-hosted server.
    """
    llm_request_ns, tool_execution_ns, step_ns = timings
    return {
        "id": step_id,
        "organization_id": DEFAULT_ORG_ID,
        "provider_id": None,
        "run_id": run.sid,
        "agent_id": run.agent_id,
        "step_start_ns": None,
        "llm_request_start_ns": None,
        "llm_request_ns": llm_request_ns,
        "tool_execution_ns": tool_execution_ns,
        "step_ns": step_ns,
        "base_template_id": None,
        "template_id": None,
        "project_id": None,
    }


def step_dict(
    step_id: str,
    run: Run,
    *,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_input_tokens: int | None,
    cache_write_tokens: int | None,
    reasoning_tokens: int | None,
    status: str,
    stop_reason: str | None,
    trace_id: str | None,
) -> dict[str, Any]:
    """A Step as ``/v1/runs/{id}/steps`` returns it (31 keys, fixture key order)."""
    provider = model.partition("/")[0]
    has_cache = bool(cached_input_tokens) or bool(cache_write_tokens)
    return {
        "id": step_id,
        "origin": None,
        "organization_id": DEFAULT_ORG_ID,
        "provider_id": None,
        "run_id": run.sid,
        "agent_id": run.agent_id,
        "provider_name": "openai" if provider.startswith("openai") else provider,
        "provider_category": "base",
        "model": step_model(model),
        "model_handle": model,
        "model_endpoint": "https://api.openai.com/v1",
        "context_window_limit": 30000,
        "completion_tokens": completion_tokens,
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cached_input_tokens": cached_input_tokens,
        "cache_write_tokens": cache_write_tokens,
        "reasoning_tokens": reasoning_tokens,
        "completion_tokens_details": (
            {"reasoning_tokens": reasoning_tokens} if reasoning_tokens is not None else None
        ),
        "prompt_tokens_details": (
            {
                "cached_tokens": cached_input_tokens or 0,
                "cache_read_tokens": cached_input_tokens or 0,
                "cache_creation_tokens": cache_write_tokens or 0,
            }
            if has_cache
            else None
        ),
        "stop_reason": stop_reason,
        "tags": [],
        "tid": None,
        "trace_id": trace_id,
        "request_id": None,
        "messages": [],
        "feedback": None,
        "project_id": None,
        "error_type": None,
        "error_data": None,
        "status": status,
    }


def _load_agent_template() -> dict[str, Any]:
    path = Path(__file__).parent.parent / "fixtures" / "letta-0.16.8" / "agents" / "alpha.json"
    return dict(json.loads(path.read_text()))


AGENT_TEMPLATE: Final = _load_agent_template()
_RELATIONSHIPS: Final[dict[str, Any]] = {
    "tags": [],
    "tools": [],
    "sources": [],
    "blocks": [],
    "identity_ids": [],
    "identities": [],
    "multi_agent_group": None,
    "managed_group": None,
    "tool_exec_environment_variables": [],
    "secrets": [],
}


def bare_agent(body: dict[str, Any]) -> dict[str, Any]:
    """An agent without relationships, as with ``include_relationships`` given."""
    bare = dict(body, **_RELATIONSHIPS)
    bare["memory"] = dict(body["memory"], blocks=[], file_blocks=[])
    return bare


def tool_messages(run: Run, tools: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A tool call message and its return per tool id of each step, oldest first."""
    out: list[dict[str, Any]] = []
    for step in run.steps:
        out.extend(_tool_messages(run, step, tools))
    return out


def step_messages(
    run: Run, step: Step, tools: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """What one step wrote, as every run's message list shows it: its tool call messages
    and returns, or an assistant message when it called no tool. Ids end in the index."""
    written = _tool_messages(run, step, tools)
    if written:
        return written
    return [
        {
            "id": f"message-{step.data['id'][5:]}-0000",
            "message_type": "assistant_message",
            "content": "ok",
            **_message_common(run, step),
        }
    ]


def _tool_messages(
    run: Run, step: Step, tools: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n, tool_id in enumerate(step.tool_ids):
        tool = tools.get(tool_id)
        name = tool["name"] if tool is not None else tool_id
        call_id = f"call_{step.data['id'][-12:]}{n:04d}"
        call = {"name": name, "arguments": "{}", "tool_call_id": call_id}
        common = _message_common(run, step)
        out.append(
            {
                "id": f"message-{step.data['id'][5:]}-{2 * n:04d}",
                "message_type": "tool_call_message",
                "tool_call": call,
                "tool_calls": [call],
                **common,
            }
        )
        out.append(
            {
                "id": f"message-{step.data['id'][5:]}-{2 * n + 1:04d}",
                "message_type": "tool_return_message",
                "tool_return": "ok",
                "status": "success",
                "tool_call_id": call_id,
                **common,
                "name": name,
            }
        )
    return out


def _message_common(run: Run, step: Step) -> dict[str, Any]:
    return {
        "date": fmt_us(step.us, zulu=True),
        "step_id": step.data["id"],
        "run_id": run.sid,
        "otid": None,
        "sender_id": None,
        "is_err": None,
        "seq_id": None,
        "name": None,
    }
